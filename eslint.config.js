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

/**
 * Layers import downward only: domain ← notify ← adapters ← jobs ← daemon / http. config,
 * logger, describe-error and observability (metrics) are shared by every layer above the domain.
 * Each entry: the files of a layer and the layers above it, which it must not import.
 */
const UPWARD = {
  notify: [
    '**/adapters/**',
    '**/jobs/**',
    '**/http/**',
    '**/daemon',
    '**/main',
    '**/demo*',
    '**/cli/**',
  ],
  adapters: ['**/jobs/**', '**/http/**', '**/daemon', '**/main', '**/demo*', '**/cli/**'],
  observability: ['**/adapters/**', '**/jobs/**', '**/http/**', '**/daemon', '**/main'],
  jobs: ['**/http/**', '**/daemon', '**/main', '**/demo*', '**/cli/**'],
};

/** @param {string[]} files @param {string[]} group @param {string} layer */
const layerRule = (files, group, layer) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          {
            group,
            message: `${layer} imports downward only (domain ← notify ← adapters ← jobs ← daemon / http).`,
          },
        ],
      },
    ],
  },
});

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
  layerRule(['src/notify/**/*.ts'], UPWARD.notify, 'src/notify'),
  layerRule(['src/adapters/**/*.ts'], UPWARD.adapters, 'src/adapters'),
  layerRule(['src/observability/**/*.ts'], UPWARD.observability, 'src/observability'),
  layerRule(['jobs/**/*.ts'], UPWARD.jobs, 'jobs'),
  {
    files: ['**/*.js', '**/*.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
