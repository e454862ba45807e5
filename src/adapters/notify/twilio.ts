import http from 'node:http';
import https from 'node:https';
import twilio from 'twilio';
import type { SmsConfig } from '../../config';
import { scrubPersonalData } from '../../describe-error';
import type { SendOutcome, SmsLookup, SmsMessage, SmsPort } from './ports';

/**
 * SMS through the twilio library. With `apiBaseUrl` set, every request the library makes is
 * re-targeted at that origin (a Twilio-compatible gateway, or the fake API the tests run on
 * loopback) by a RequestClient subclass; paths, auth and bodies stay exactly what the library
 * sends to api.twilio.com.
 *
 * Error codes (https://www.twilio.com/docs/api/errors): 20429 and HTTP 5xx are transient;
 * 21211 invalid number, 21610 unsubscribed (STOP), 21612 unreachable route, 21614 not a mobile
 * number, 21408 region not enabled are permanent. Only 21610 marks the contact (opted out);
 * the others describe the number or our account, which the billing system or an operator fixes.
 */

const PERMANENT_CODES = new Set([21211, 21408, 21610, 21612, 21614]);
/** How far back (ms) before the first attempt a provider-side message may be dated (clock skew). */
const LOOKUP_SKEW_MS = 5 * 60_000;

export interface TwilioOptions {
  readonly sms: SmsConfig;
  /** Deadline of one request, ms. */
  readonly timeoutMs: number;
  /** Sockets per origin (keep-alive). */
  readonly maxSockets?: number;
}

class RetargetedRequestClient extends twilio.RequestClient {
  constructor(
    private readonly base: URL | null,
    opts: ConstructorParameters<typeof twilio.RequestClient>[0],
    maxSockets: number,
  ) {
    super(opts);
    // The library only configures an https agent; a plain-http gateway gets a keep-alive one too.
    this.axios.defaults.httpAgent = new http.Agent({ keepAlive: true, maxSockets });
    if (base?.protocol === 'https:') {
      this.axios.defaults.httpsAgent = new https.Agent({ keepAlive: true, maxSockets });
    }
  }

  override request<TData>(opts: RequestOptions<TData>) {
    if (this.base !== null) {
      const target = new URL(opts.uri);
      const rebased = new URL(
        `${this.base.pathname.replace(/\/$/, '')}${target.pathname}`,
        this.base,
      );
      rebased.search = target.search;
      opts = { ...opts, uri: rebased.toString() };
    }
    return super.request<TData>(opts);
  }
}

type RequestOptions<TData> = Parameters<typeof twilio.RequestClient.prototype.request<TData>>[0];

interface RestError {
  status?: number;
  code?: number | string;
  message?: string;
}

export function twilioSmsPort(options: TwilioOptions): SmsPort {
  const { sms } = options;
  const maxSockets = options.maxSockets ?? 64;
  const httpClient = new RetargetedRequestClient(
    sms.apiBaseUrl === null ? null : new URL(sms.apiBaseUrl),
    { timeout: options.timeoutMs, keepAlive: true, maxSockets, autoRetry: false },
    maxSockets,
  );
  const client = twilio(sms.accountSid, sms.authToken, { httpClient, autoRetry: false });
  const sender =
    sms.messagingServiceSid !== null
      ? { messagingServiceSid: sms.messagingServiceSid }
      : { from: sms.from ?? '' };

  return {
    provider: 'twilio',
    async send(message: SmsMessage, statusCallbackUrl: string | null): Promise<SendOutcome> {
      try {
        const created = await client.messages.create({
          to: message.to,
          body: message.body,
          ...sender,
          ...(statusCallbackUrl === null ? {} : { statusCallback: statusCallbackUrl }),
        });
        return { ok: true, provider: 'twilio', messageId: created.sid };
      } catch (error) {
        return classifyTwilioError(error as RestError);
      }
    },
    async find(lookup: SmsLookup): Promise<string | null> {
      // Newest first; a message of this notification was created after its first attempt began.
      // Filtering on date_sent would miss messages still queued (date_sent is null until sent).
      const since = lookup.since.getTime() - LOOKUP_SKEW_MS;
      const recent = await client.messages.list({
        to: lookup.to,
        ...(sms.messagingServiceSid === null && sms.from !== null ? { from: sms.from } : {}),
        pageSize: 50,
        limit: 50,
      });
      const match = recent.find(
        (m) => m.body === lookup.body && (m.dateCreated?.getTime() ?? 0) >= since,
      );
      return match?.sid ?? null;
    },
    close: () => Promise.resolve(),
  };
}

export function classifyTwilioError(err: RestError): SendOutcome {
  const numeric = typeof err.code === 'number' ? err.code : undefined;
  // Twilio's messages may quote the number (21211 "The 'To' number +1… is not a valid phone
  // number"): masked, since the reason is stored as last_error and becomes the failedReason.
  const reason = scrubPersonalData(err.message ?? 'twilio error').slice(0, 500);
  if (numeric !== undefined && typeof err.status === 'number') {
    const code = `twilio-${numeric}`;
    if (numeric === 20429 || err.status === 429 || err.status >= 500) {
      return { ok: false, permanent: false, ambiguous: false, code, reason };
    }
    if (PERMANENT_CODES.has(numeric)) {
      return {
        ok: false,
        permanent: true,
        ambiguous: false,
        code,
        reason,
        ...(numeric === 21610 ? { mark: 'sms-opted-out' as const } : {}),
      };
    }
    // Authentication or account problems (401/403) are ours to fix: keep retrying while an
    // operator is alerted, rather than dropping the customer's message.
    if (err.status === 401 || err.status === 403) {
      return { ok: false, permanent: false, ambiguous: false, code, reason };
    }
    return { ok: false, permanent: err.status < 500, ambiguous: false, code, reason };
  }
  if (typeof err.status === 'number') {
    // An HTTP error without a Twilio body (a proxy in the way).
    const permanent =
      err.status >= 400 && err.status < 500 && ![401, 403, 408, 429].includes(err.status);
    return { ok: false, permanent, ambiguous: false, code: `http-${err.status}`, reason };
  }
  // Transport errors: refused before anything was sent, or lost after (ambiguous).
  const transport = typeof err.code === 'string' ? err.code : 'error';
  const refused = transport === 'ECONNREFUSED' || transport === 'ENOTFOUND';
  const timeout =
    transport === 'ECONNABORTED' || transport === 'ETIMEDOUT' || /timeout/i.test(reason);
  return {
    ok: false,
    permanent: false,
    ambiguous: !refused,
    code: timeout ? 'timeout' : transport.toLowerCase(),
    reason,
  };
}
