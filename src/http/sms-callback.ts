import type { FastifyInstance } from 'fastify';
import twilio from 'twilio';
import type { Db } from '../adapters/db/client';
import { recordCallback, type CallbackTarget } from '../adapters/db/sms-callback-store';
import type { Config } from '../config';
import { LogThrottle, type Logger } from '../logger';
import { metrics } from '../observability/metrics';

/**
 * POST /v1/callbacks/sms — Twilio's message status callback (form-encoded). Accepted only with a
 * valid X-Twilio-Signature computed over the configured public URL (SMS_STATUS_CALLBACK_URL) and
 * the posted parameters; anything else gets 403. Status only moves forward (a late `sent` never
 * overwrites `delivered`); duplicates are acknowledged without effect, so Twilio does not retry
 * them. A callback for a message id not recorded yet (it beat the sender's row update) is kept
 * and applied when the sender records the id, or dropped after a day
 * (src/adapters/db/sms-callback-store.ts).
 *
 * Only form bodies are parsed (anything else is 415 before a byte of it is read), at most
 * CALLBACK_BODY_LIMIT bytes (413). Every refusal (400, 403, 413, 415) is counted in
 * overdue_http_refused_total{route="sms-callback"} and logged at most once a minute, with the
 * number of refusals since the last line: an unauthenticated caller cannot flood the log.
 */

/** Largest callback body, bytes (Twilio's are well under 2 KB). */
const CALLBACK_BODY_LIMIT = 64 * 1024;
/** At most one "callback refused" line per this, ms. */
const REFUSED_LOG_INTERVAL_MS = 60_000;

export const SMS_CALLBACK_PATH = '/v1/callbacks/sms';

type Target = CallbackTarget;

/** Twilio MessageStatus → our status; null for statuses that are not progress for us. */
function targetOf(status: string): Target | null {
  switch (status) {
    case 'sent':
      return 'sent';
    case 'delivered':
    case 'read':
      return 'delivered';
    case 'undelivered':
    case 'failed':
      return 'undeliverable';
    default:
      return null; // accepted, queued, scheduled, sending, canceled: nothing to record
  }
}

export async function registerSmsCallback(
  app: FastifyInstance,
  deps: { db: Db; config: Config; logger: Logger },
): Promise<void> {
  const { db, config } = deps;
  const logger = deps.logger.child({ component: 'sms-callback' });
  const authToken = config.sms?.authToken ?? null;
  const publicUrl = config.notify.smsStatusCallbackUrl;

  const refusedLog = new LogThrottle(REFUSED_LOG_INTERVAL_MS);

  await app.register((scope, _opts, done) => {
    // Encapsulated: only the form parser exists in this scope (JSON and text bodies get 415).
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: CALLBACK_BODY_LIMIT },
      (_req, body, parsed) => {
        const params: Record<string, string> = {};
        for (const [k, v] of new URLSearchParams(body as string)) params[k] = v;
        parsed(null, params);
      },
    );

    scope.addHook('onResponse', async (req, reply) => {
      const status = reply.statusCode;
      if (status < 400 || status >= 500) return;
      metrics.httpRefused('sms-callback', status);
      const suppressed = refusedLog.take('refused');
      if (suppressed !== null) {
        logger.warn(
          {
            status,
            hasSignature: typeof req.headers['x-twilio-signature'] === 'string',
            suppressed,
          },
          'callback refused (further refusals within a minute are only counted in metrics)',
        );
      }
    });

    scope.post(SMS_CALLBACK_PATH, { bodyLimit: CALLBACK_BODY_LIMIT }, async (req, reply) => {
      const signature = req.headers['x-twilio-signature'];
      const params = (req.body ?? {}) as Record<string, string>;
      const valid =
        authToken !== null &&
        publicUrl !== null &&
        typeof signature === 'string' &&
        typeof params === 'object' &&
        twilio.validateRequest(authToken, signature, publicUrl, params);
      if (!valid) {
        return reply.code(403).send({ error: 'invalid signature' });
      }

      const sid = params.MessageSid ?? params.SmsSid;
      const status = params.MessageStatus ?? params.SmsStatus;
      if (sid === undefined || status === undefined || !/^(SM|MM)[0-9a-f]{32}$/.test(sid)) {
        return reply.code(400).send({ error: 'MessageSid and MessageStatus are required' });
      }
      const target = targetOf(status);
      if (target === null) return reply.code(204).send();

      const { result, key } = await recordCallback(db, {
        providerId: 'twilio',
        messageId: sid,
        target,
        errorCode: params.ErrorCode ?? null,
        providerStatus: status,
      });
      if (result === 'recorded') logger.info({ key, status: target }, 'delivery status recorded');
      else if (result === 'kept-early') {
        logger.info({ sid, status: target }, 'callback before the message id was recorded; kept');
      } else logger.debug({ sid, status }, 'stale or duplicate callback ignored');
      return reply.code(204).send();
    });
    done();
  });
}
