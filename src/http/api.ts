import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { dbErrorInfo } from '../describe-error';
import { ID_MAX_LENGTH, ID_PATTERN, ID_RE } from '../domain/ids';
import type { Principal } from './auth';

/**
 * A small typed layer over Fastify for the /v1 API: each route declares zod schemas for its path
 * parameters, query and body; input is parsed before the handler runs and bad input answers 400
 * with every field path and reason. The same declarations generate the OpenAPI document, so the
 * document cannot drift from what is validated.
 */

// ---------------------------------------------------------------------------------------------
// Shared schemas.

/** Ids written by the billing system (they become parts of job ids: no ':'). */
export const idSchema = z.string().regex(ID_RE, `must match ${ID_PATTERN}`);

/** Short code such as a product, metric or plan kind. */
export const codeSchema = z
  .string()
  .regex(ID_RE, `must be 1-${ID_MAX_LENGTH} letters, digits, _ . -`);

/** Integer minor units (cents) of the account's currency, exactly representable. */
export const minorSchema = z.int().min(0).max(Number.MAX_SAFE_INTEGER);

/** Free text for notes: printable, no control characters (PostgreSQL refuses NUL). */
export const noteSchema = z
  .string()
  .max(500)
  .regex(/^[^\p{Cc}]*$/u, 'must not contain control characters');

/** An instant with an explicit offset, years 1970-9999 (what timestamptz and JS agree on). */
export const instantSchema = z.iso.datetime({ offset: true }).refine((text) => {
  const year = new Date(text).getUTCFullYear();
  return year >= 1970 && year <= 9999;
}, 'must be between 1970 and 9999');

export const accountParams = z.object({ id: idSchema }).strict();

// ---------------------------------------------------------------------------------------------
// Errors.

/** An expected failure with a status below 500, or 502/503 for a dependency. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export const notFound = (what: string, id: string): HttpError =>
  new HttpError(404, 'not-found', `${what} ${id} not found`);

export interface FieldIssue {
  readonly path: string;
  readonly message: string;
}

export function issuesOf(error: z.ZodError, location: string): FieldIssue[] {
  return error.issues.flatMap((issue) => {
    const base = [location, ...issue.path.map(String)].filter((p) => p !== '').join('.');
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((key) => ({ path: `${base}.${key}`, message: 'unknown field' }));
    }
    return [{ path: base, message: issue.message }];
  });
}

export function badRequest(issues: FieldIssue[]): HttpError {
  const summary = issues
    .slice(0, 5)
    .map((i) => `${i.path}: ${i.message}`)
    .join('; ');
  return new HttpError(400, 'bad-request', summary, { issues });
}

/**
 * Error handler of the API scope: HttpError as is; Fastify's own 4xx (bad JSON, too large,
 * unsupported media type) as is; database integrity errors caused by the input (check, foreign
 * key, unique) as 409 with a generic message (the constraint and table go to the log only: the
 * schema's names are no business of a client); data exceptions as 400. Anything else is a bug or an
 * outage: 500/503, logged. Answers and log lines name the SQLSTATE, constraint and table, never
 * the database's message or the query's parameters (src/describe-error.ts).
 */
export function apiErrorHandler(
  error: FastifyError | HttpError | Error,
  req: FastifyRequest,
  reply: FastifyReply,
): FastifyReply {
  if (error instanceof HttpError) {
    return reply
      .code(error.status)
      .send({ error: error.code, message: error.message, ...error.extra });
  }
  const status = (error as FastifyError).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return reply.code(status).send({ error: 'bad-request', message: error.message });
  }
  const pg = dbErrorInfo(error);
  if (pg?.code.startsWith('23')) {
    req.log.warn({ err: error }, 'request refused by a database rule');
    return reply.code(409).send({
      error: 'conflict',
      message: 'the data conflicts with stored data or breaks a rule of the data model',
    });
  }
  if (pg?.code.startsWith('22')) {
    return reply.code(400).send({ error: 'bad-request', message: 'a value is out of range' });
  }
  if (pg?.code === '57014') {
    // statement_timeout (INGEST_STATEMENT_TIMEOUT): nothing was stored.
    return reply.code(503).header('retry-after', '5').send({
      error: 'retry',
      message: 'the database took too long; nothing was stored, retry the request',
    });
  }
  if (pg?.code === '40001' || pg?.code === '40P01') {
    return reply.code(503).header('retry-after', '1').send({
      error: 'retry',
      message: 'concurrent update; retry the request',
    });
  }
  req.log.error({ err: error }, 'request failed');
  return reply.code(500).send({ error: 'internal', message: 'internal error' });
}

// ---------------------------------------------------------------------------------------------
// Routes.

export type AnyObject = z.ZodType<Record<string, unknown>, Record<string, unknown>>;

export interface ApiInput<P extends AnyObject, Q extends AnyObject, B extends z.ZodType> {
  readonly params: z.output<P>;
  readonly query: z.output<Q>;
  readonly body: z.output<B>;
  readonly principal: Principal;
  readonly req: FastifyRequest;
}

export interface ApiRoute<
  P extends AnyObject = AnyObject,
  Q extends AnyObject = AnyObject,
  B extends z.ZodType = z.ZodType,
> {
  readonly method: 'GET' | 'POST' | 'DELETE';
  /** Fastify path, e.g. `/v1/accounts/:id/evaluate`. */
  readonly url: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: string;
  readonly params?: P;
  readonly query?: Q;
  /** A missing body is parsed as `{}`. */
  readonly body?: B;
  /** Status → description, for the OpenAPI document. */
  readonly responses: Readonly<Record<number, string>>;
  /** Reply status on success (default 200). */
  readonly status?: number;
  handler(input: ApiInput<P, Q, B>, reply: FastifyReply): Promise<unknown>;
}

const empty = z.object({}).strict();

/** Collects routes for one Fastify scope and for the OpenAPI document. */
export class Api {
  private readonly routes: ApiRoute[] = [];

  constructor(private readonly app: FastifyInstance) {}

  route<P extends AnyObject, Q extends AnyObject, B extends z.ZodType>(
    def: ApiRoute<P, Q, B>,
  ): void {
    this.routes.push(def);
    this.app.route({
      method: def.method,
      url: def.url,
      handler: async (req, reply) => {
        const issues: FieldIssue[] = [];
        const parse = <S extends z.ZodType>(
          schema: S | undefined,
          value: unknown,
          where: string,
        ): z.output<S> => {
          const result = (schema ?? empty).safeParse(value ?? {});
          if (!result.success) {
            issues.push(...issuesOf(result.error, where));
            return undefined as z.output<S>;
          }
          return result.data as z.output<S>;
        };
        const params = parse(def.params, req.params, 'params');
        const query = parse(def.query, req.query, 'query');
        const body = parse(def.body, req.body, 'body');
        if (issues.length > 0) throw badRequest(issues);
        const principal = req.principal;
        if (principal === undefined) throw new HttpError(401, 'unauthorized', 'not authenticated');
        const result = await def.handler({ params, query, body, principal, req }, reply);
        if (reply.sent) return reply;
        return reply.code(def.status ?? 200).send(result);
      },
    });
  }

  /** OpenAPI 3.0 document of every route registered so far. */
  openApi(info: { title: string; version: string }): Record<string, unknown> {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const r of this.routes) {
      const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}');
      const parameters = [...parametersOf(r.params, 'path'), ...parametersOf(r.query, 'query')];
      const operation: Record<string, unknown> = {
        summary: r.summary,
        ...(r.description ? { description: r.description } : {}),
        tags: [r.tag],
        operationId: `${r.method.toLowerCase()}${path.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ?? '').toUpperCase())}`,
        parameters,
        responses: Object.fromEntries(
          Object.entries({
            ...r.responses,
            400: 'Bad input: `issues` lists each field path and reason',
            401: 'Missing or wrong credentials',
            ...(r.method === 'GET' ? {} : { 403: 'Read-only account or cross-origin request' }),
          }).map(([status, description]) => [status, { description }]),
        ),
      };
      if (r.body !== undefined) {
        operation.requestBody = {
          required: true,
          content: { 'application/json': { schema: jsonSchema(r.body) } },
        };
      }
      paths[path] = { ...paths[path], [r.method.toLowerCase()]: operation };
    }
    return {
      openapi: '3.0.3',
      info,
      servers: [{ url: '/' }],
      security: [{ basic: [] }, { bearer: [] }],
      components: {
        securitySchemes: {
          basic: { type: 'http', scheme: 'basic', description: 'DASHBOARD_USER or the viewer' },
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description:
              'A token of API_TOKENS; its scope limits it: ingest (/v1/ingest/*), read (GET routes), operator (everything)',
          },
        },
      },
      paths,
    };
  }
}

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  return z.toJSONSchema(schema, {
    target: 'openapi-3.0',
    io: 'input',
    unrepresentable: 'any',
  });
}

function parametersOf(schema: AnyObject | undefined, where: 'path' | 'query'): unknown[] {
  if (schema === undefined) return [];
  const json = jsonSchema(schema) as {
    properties?: Record<string, unknown>;
    required?: string[];
  };
  return Object.entries(json.properties ?? {}).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || (json.required ?? []).includes(name),
    schema: s,
  }));
}
