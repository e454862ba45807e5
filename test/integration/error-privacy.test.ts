import type { Job, Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger';
import { startNotifyHarness, waitFor, type NotifyHarness } from '../support/daemon';

/**
 * A failing query's parameters (a customer's e-mail address and phone number) must reach
 * neither the log nor a job's failedReason or stacktrace (the dashboard's read-only viewer
 * reads those), nor a last_error column; the SQLSTATE and the constraint must. The real daemon
 * runs the real jobs through BullMQ against PostgreSQL, with the production logger writing to a
 * captured destination; the failures are provoked with CHECK constraints added to the test
 * database, so the statements that fail are the daemon's own.
 */

const EMAIL = 'jane.doe.private@example.com';
const PHONE = '+15551234567';
/** Every form the contact could leak in (drizzle prints parameters as they are). */
const SECRETS = [EMAIL, 'jane.doe.private', PHONE, '5551234567'];

const lines: string[] = [];
let h: NotifyHarness;

beforeAll(async () => {
  const logger = createLogger('debug', { write: (line: string) => void lines.push(line) });
  h = await startNotifyHarness({}, { logger });
});

afterAll(async () => {
  await h?.stop();
});

async function overdueAccount(
  id: string,
  prefs: { email: boolean; sms: boolean } = { email: true, sms: true },
): Promise<void> {
  await h.t.raw`insert into accounts (id, currency, email, phone, notify_email, notify_sms)
                values (${id}, 'USD', ${EMAIL}, ${PHONE}, ${prefs.email}, ${prefs.sms})`;
  await h.t
    .raw`insert into services (id, account_id, kind) values (${`${id}-s`}, ${id}, 'streaming')`;
  await h.t.raw`insert into bills (id, account_id, product, amount_minor, issued_at, due_at)
                values (${`${id}-b`}, ${id}, 'live', 888800, now() - interval '2 days',
                        now() - interval '1 hour')`;
}

/** Jobs of a queue, whatever their state, that have failed at least once. */
async function failedOnce(queue: Queue): Promise<Job[]> {
  const jobs = await queue.getJobs(['failed', 'delayed', 'wait', 'active', 'prioritized']);
  return jobs.filter((j) => (j.failedReason ?? '') !== '');
}

function expectNoContact(text: string, where: string): void {
  for (const secret of SECRETS) expect(text, `${where} contains ${secret}`).not.toContain(secret);
}

describe('no personal data in logs or job failure reasons', () => {
  it('a failing insert of a notification: the evaluation job fails with the SQLSTATE and the constraint, not the contact', async () => {
    await h.t.raw`alter table notifications add constraint notifications_privacy_probe
                  check (account_id <> 'privacy-1') not valid`;
    const from = lines.length;
    await overdueAccount('privacy-1');
    // The billing write's trigger queued an evaluation (retried with backoff); one more with a
    // single attempt fails for good, as an operator's "evaluate now" would.
    const queue = h.daemon.ctx.queues.byName.evaluate;
    await queue.add(
      'evaluate-account',
      { accountId: 'privacy-1', origin: 'operator:test' },
      { jobId: 'privacy-eval-1', attempts: 1 },
    );
    await waitFor(
      async () => (await queue.getJobState('privacy-eval-1')) === 'failed',
      15_000,
      'the evaluation to fail',
    );
    // Read once failed: a job read before its state says failed may predate its failedReason.
    const job = await queue.getJob('privacy-eval-1');
    if (job === undefined) throw new Error('job privacy-eval-1 is gone');
    await waitFor(
      () => lines.slice(from).some((l) => l.includes('job failed for good')),
      5_000,
      'the failure to be logged',
    );

    const failed = await failedOnce(queue);
    expect(failed.length).toBeGreaterThanOrEqual(1);
    for (const j of failed) {
      expectNoContact(j.failedReason, `failedReason of ${j.id}`);
      expectNoContact((j.stacktrace ?? []).join('\n'), `stacktrace of ${j.id}`);
      expect(j.failedReason).toContain('23514');
      expect(j.failedReason).toContain('notifications_privacy_probe');
    }
    expect(job.failedReason).toBe(
      'database error 23514 check_violation (constraint notifications_privacy_probe, table notifications)',
    );

    const logged = lines.slice(from);
    for (const line of logged) expectNoContact(line, 'a log line');
    const failure = logged
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'job failed for good' && l.jobId === 'privacy-eval-1');
    expect(failure?.err).toMatchObject({
      sqlState: '23514',
      constraint: 'notifications_privacy_probe',
      table: 'notifications',
    });
  });

  it("a failing fallback after Twilio refused the number: the sender's job, last_error and log say why without the contact", async () => {
    // Only SMS is wanted; Twilio refuses the number, quoting it as the real API does; the
    // fallback e-mail's insert (which carries the address) then breaks a constraint.
    await h.t.raw`alter table notifications add constraint notifications_fallback_probe
                  check (account_id <> 'privacy-2' or dedupe_key not like '%-fallback') not valid`;
    h.twilio.script(
      {
        kind: 'error',
        status: 400,
        code: 21211,
        message: `The 'To' number ${PHONE} is not a valid phone number.`,
      },
      // Enough refusals for every attempt: however many retries run before the constraint is
      // dropped, the one after it is refused too (and then marked failed).
      20,
    );
    const from = lines.length;
    await overdueAccount('privacy-2', { email: false, sms: true });

    const queue = h.daemon.ctx.queues.byName['notify-sms'];
    const [job] = await waitFor(
      async () => {
        const jobs = await failedOnce(queue);
        return jobs.length > 0 ? jobs : null;
      },
      15_000,
      'the SMS job to fail',
    );
    expect(h.twilio.createRequests()).toBeGreaterThanOrEqual(1);
    expectNoContact(job?.failedReason ?? '', 'failedReason');
    expectNoContact((job?.stacktrace ?? []).join('\n'), 'stacktrace');
    expect(job?.failedReason).toContain('23514');
    expect(job?.failedReason).toContain('notifications_fallback_probe');

    // The Twilio reason as it is stored once the fallback can be written. The failed attempt
    // left the row `sending` under its lease: ended here, so the retry need not wait for it.
    await h.t.raw`alter table notifications drop constraint notifications_fallback_probe`;
    await h.t.raw`update notifications set claim_expires_at = now()
                  where account_id = 'privacy-2' and status = 'sending'`;
    const [row] = await waitFor(
      async () => {
        const rows = await h.t.raw<{ last_error: string | null }[]>`
          select last_error from notifications
           where account_id = 'privacy-2' and channel = 'sms' and status = 'failed'`;
        return rows.length > 0 ? rows : null;
      },
      45_000,
      'the SMS to be marked failed',
    );
    expect(row?.last_error).toContain('twilio-21211');
    expectNoContact(row?.last_error ?? '', 'notifications.last_error');
    const outbox = await h.t.raw<{ last_error: string | null }[]>`
      select last_error from outbox where account_id = 'privacy-2'`;
    for (const r of outbox) expectNoContact(r.last_error ?? '', 'outbox.last_error');
    const after = await queue.getJobs(['failed', 'delayed', 'wait', 'active']);
    for (const j of after) expectNoContact(j.failedReason ?? '', `failedReason of ${j.id}`);

    for (const line of lines.slice(from)) expectNoContact(line, 'a log line');
    // The sender's own failure is logged (not only the evaluation retries of the test before).
    const senderFailures = lines
      .slice(from)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.queue === 'notify-sms' && String(l.msg).startsWith('job failed'));
    expect(senderFailures.length).toBeGreaterThanOrEqual(1);
    expect(senderFailures[0]?.err).toMatchObject({
      sqlState: '23514',
      constraint: 'notifications_fallback_probe',
      table: 'notifications',
    });
  }, 60_000);
});
