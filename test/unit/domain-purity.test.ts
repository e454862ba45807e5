import {
  mkdtempSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  cpSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * src/domain is pure: it may import only other files of src/domain and a short allowlist of
 * libraries, and it never reads the clock, randomness or the process. ESLint enforces the same
 * (eslint.config.js); this test holds even when lint is skipped, and checks dynamic imports and
 * re-exports too.
 */

const DOMAIN_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/domain');

/** Bare module specifiers the domain may import (exactly, or a subpath of them). */
const ALLOWED_PACKAGES = ['luxon', 'zod'];

/** Code (comments stripped) that reads the clock, randomness or the process. */
const FORBIDDEN_CODE: { pattern: RegExp; what: string }[] = [
  { pattern: /\bprocess\s*\./, what: 'process.' },
  { pattern: /\bDate\s*\.\s*now\s*\(/, what: 'Date.now(' },
  { pattern: /\bnew\s+Date\s*\(\s*\)/, what: 'new Date()' },
  { pattern: /\bnew\s+Date\b(?!\s*\()/, what: 'new Date without arguments' },
  { pattern: /\bDateTime\s*\.\s*now\s*\(/, what: 'DateTime.now(' },
  { pattern: /\bDateTime\s*\.\s*local\s*\(/, what: 'DateTime.local(' },
  { pattern: /\bDateTime\s*\.\s*utc\s*\(\s*\)/, what: 'DateTime.utc()' },
  { pattern: /\bMath\s*\.\s*random\s*\(/, what: 'Math.random(' },
  { pattern: /\bperformance\s*\.\s*now\s*\(/, what: 'performance.now(' },
];

function isAllowedPackage(specifier: string): boolean {
  return ALLOWED_PACKAGES.some((p) => specifier === p || specifier.startsWith(`${p}/`));
}

/** The source with comments removed (strings and code kept), via the TypeScript scanner. */
function stripComments(source: string): string {
  const scanner = ts.createScanner(
    ts.ScriptTarget.Latest,
    false,
    ts.LanguageVariant.Standard,
    source,
  );
  let out = '';
  for (let kind = scanner.scan(); kind !== ts.SyntaxKind.EndOfFileToken; kind = scanner.scan()) {
    const isComment =
      kind === ts.SyntaxKind.SingleLineCommentTrivia ||
      kind === ts.SyntaxKind.MultiLineCommentTrivia;
    out += isComment ? ' ' : scanner.getTokenText();
  }
  return out;
}

/**
 * Every purity violation of one file. `file` is an absolute path inside `domainDir`; relative
 * imports must stay inside `domainDir`.
 */
function purityViolations(file: string, source: string, domainDir = DOMAIN_DIR): string[] {
  const violations: string[] = [];
  const name = relative(domainDir, file);
  // Static imports, `export ... from`, `import type`, side-effect imports, import() and require().
  const info = ts.preProcessFile(source, true, true);
  for (const { fileName: specifier } of info.importedFiles) {
    if (specifier.startsWith('.')) {
      const target = resolve(dirname(file), specifier);
      if (target !== domainDir && !target.startsWith(domainDir + sep)) {
        violations.push(`${name}: imports '${specifier}', outside src/domain`);
      }
    } else if (!isAllowedPackage(specifier)) {
      violations.push(`${name}: imports '${specifier}', not in the allowlist`);
    }
  }
  for (const ref of info.referencedFiles) {
    violations.push(`${name}: references '${ref.fileName}' with a triple-slash directive`);
  }
  const code = stripComments(source);
  for (const { pattern, what } of FORBIDDEN_CODE) {
    if (pattern.test(code)) violations.push(`${name}: uses ${what}`);
  }
  return violations;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|tsx|mts|cts|js|mjs|cjs)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name))
    .sort();
}

function violationsIn(domainDir: string): string[] {
  return sourceFiles(domainDir).flatMap((file) =>
    purityViolations(file, readFileSync(file, 'utf8'), domainDir),
  );
}

describe('src/domain purity', () => {
  it('src/domain has source files to check', () => {
    expect(sourceFiles(DOMAIN_DIR).length).toBeGreaterThan(0);
  });

  it('no file in src/domain imports I/O or reads the clock, randomness or the process', () => {
    expect(violationsIn(DOMAIN_DIR)).toEqual([]);
  });
});

describe('the purity checker itself', () => {
  const file = join(DOMAIN_DIR, 'sub', 'example.ts');

  const bad: { name: string; source: string; expected: string }[] = [
    {
      name: 'node builtin',
      source: "import { readFileSync } from 'node:fs';",
      expected: "'node:fs'",
    },
    { name: 'bare builtin', source: "import fs from 'fs';", expected: "'fs'" },
    { name: 'database driver', source: "import postgres from 'postgres';", expected: "'postgres'" },
    { name: 'queue library', source: "import { Queue } from 'bullmq';", expected: "'bullmq'" },
    {
      name: 'type-only import of a library',
      source: "import type { Logger } from 'pino';",
      expected: "'pino'",
    },
    {
      name: 'adapter via relative path',
      source: "import { db } from '../../adapters/db/client';",
      expected: 'outside src/domain',
    },
    {
      name: 'config via relative path',
      source: "import { loadConfig } from '../../config';",
      expected: 'outside src/domain',
    },
    {
      name: 're-export from outside',
      source: "export * from '../../logger';",
      expected: 'outside src/domain',
    },
    { name: 'side-effect import', source: "import 'dotenv/config';", expected: "'dotenv/config'" },
    {
      name: 'dynamic import',
      source: "const m = await import('node:crypto');",
      expected: "'node:crypto'",
    },
    { name: 'require', source: "const fs = require('fs');", expected: "'fs'" },
    {
      name: 'lookalike of an allowed package',
      source: "import x from 'luxon-extra';",
      expected: "'luxon-extra'",
    },
    { name: 'process.env', source: 'const url = process.env.DATABASE_URL;', expected: 'process.' },
    { name: 'process.hrtime', source: 'const t = process .hrtime();', expected: 'process.' },
    { name: 'Date.now()', source: 'const t = Date.now();', expected: 'Date.now(' },
    { name: 'new Date()', source: 'const d = new Date();', expected: 'new Date()' },
    {
      name: 'new Date without parentheses',
      source: 'const d = new Date;',
      expected: 'new Date without',
    },
    { name: 'DateTime.now()', source: 'const d = DateTime.now();', expected: 'DateTime.now(' },
    {
      name: 'DateTime.local()',
      source: 'const d = DateTime.local();',
      expected: 'DateTime.local(',
    },
    { name: 'DateTime.utc()', source: 'const d = DateTime.utc();', expected: 'DateTime.utc()' },
    { name: 'Math.random()', source: 'const r = Math.random();', expected: 'Math.random(' },
    {
      name: 'performance.now()',
      source: 'const t = performance.now();',
      expected: 'performance.now(',
    },
  ];
  it.each(bad)('flags $name', ({ source, expected }) => {
    const violations = purityViolations(file, source);
    expect(violations).toHaveLength(1);
    expect(violations[0]).toContain(expected);
  });

  const good: { name: string; source: string }[] = [
    { name: 'relative import inside the domain', source: "import { keys } from '../keys';" },
    { name: 'luxon', source: "import { DateTime } from 'luxon';" },
    { name: 'zod subpath', source: "import { z } from 'zod/v4';" },
    { name: 'a Date from an argument', source: 'const d = new Date(now.getTime() + ms);' },
    { name: 'an explicit DateTime', source: "const d = DateTime.fromISO('2025-03-30T01:00Z');" },
    {
      name: 'clock words in comments',
      source: '// never call Date.now() or process.env here\n/* new Date() */',
    },
    {
      name: 'an identifier ending in process',
      source: 'const reprocess = 1; const x = subprocess.y;',
    },
  ];
  it.each(good)('accepts $name', ({ source }) => {
    expect(purityViolations(file, source)).toEqual([]);
  });

  const temp = mkdtempSync(join(tmpdir(), 'domain-purity-'));
  afterAll(() => rmSync(temp, { recursive: true, force: true }));

  it('a copy of src/domain fails once a bad file is added to it', () => {
    const copy = join(temp, 'domain');
    cpSync(DOMAIN_DIR, copy, { recursive: true });
    expect(violationsIn(copy)).toEqual([]);
    mkdirSync(join(copy, 'nested'), { recursive: true });
    writeFileSync(
      join(copy, 'nested', 'sneaky.ts'),
      "import { Redis } from 'ioredis';\nexport const at = () => Date.now();\n",
    );
    expect(violationsIn(copy)).toEqual([
      `${join('nested', 'sneaky.ts')}: imports 'ioredis', not in the allowlist`,
      `${join('nested', 'sneaky.ts')}: uses Date.now(`,
    ]);
  });
});
