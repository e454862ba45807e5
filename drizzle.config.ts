import { defineConfig } from 'drizzle-kit';

/**
 * drizzle-kit reads this for `npm run db:generate` (SQL migrations into drizzle/, reviewed before
 * commit). Applying migrations is `npm run db:migrate`, which uses drizzle-orm's migrator, so no
 * database credentials are needed here.
 */
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/adapters/db/schema.ts',
  out: './drizzle',
  strict: true,
  verbose: true,
});
