// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Modules the pure domain core may import: nothing that does I/O, talks to a service or reads time. */
const DOMAIN_FORBIDDEN_IMPORTS = [
  'node:*',
  'fs',
  'fs/*',
  'path',
  'os',
  'child_process',
  'net',
  'http',
  'https',
  'crypto',
  'process',
  'timers',
  'bullmq',
  'ioredis',
  'drizzle-orm',
  'drizzle-orm/*',
  'postgres',
  '@electric-sql/*',
  'nodemailer',
  'twilio',
  'pino',
  '**/adapters/**',
  '**/http/**',
  '**/config',
  '**/logger',
  '**/jobs/**',
];

export default tseslint.config(
  { ignores: ['node_modules/', 'coverage/', 'drizzle/', 'data/', 'bench-results/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: DOMAIN_FORBIDDEN_IMPORTS,
              message: 'src/domain is pure: no I/O, services, config or clock.',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'src/domain must not read process or process.env.' },
        { name: 'setTimeout', message: 'src/domain must not schedule anything.' },
        { name: 'setInterval', message: 'src/domain must not schedule anything.' },
        { name: 'fetch', message: 'src/domain must not do I/O.' },
        { name: 'performance', message: 'src/domain must not read the clock.' },
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: "NewExpression[callee.name='Date'][arguments.length=0]",
          message: 'src/domain must not read the clock: take `now` as an argument.',
        },
        {
          selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']",
          message: 'src/domain must not read the clock: take `now` as an argument.',
        },
        {
          selector:
            "CallExpression[callee.object.name='DateTime'][callee.property.name=/^(now|local)$/]",
          message: 'src/domain must not read the clock: take `now` as an argument.',
        },
        {
          selector: "MemberExpression[object.name='Math'][property.name='random']",
          message: 'src/domain must be deterministic.',
        },
      ],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
