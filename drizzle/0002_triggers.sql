-- Reaction in seconds. Every change the billing system makes to an account's money, bills,
-- services or plans sends NOTIFY overdue_worker_account with the account id; the daemon LISTENs
-- and evaluates that account at once. The daemon's own writes set the transaction-local setting
-- overdue_worker.origin = 'daemon' and do not notify, so evaluations never wake themselves.
--
-- The bills trigger also keeps accounts.earliest_unpaid_due_at current (the scan's overdue
-- filter) and, by updating the account row, takes its row lock: a payment and an evaluation of
-- the same account are serialized, so an evaluation never decides on a payment it cannot see.
CREATE OR REPLACE FUNCTION overdue_worker_notify(account text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('overdue_worker.origin', true), '') <> 'daemon' THEN
    PERFORM pg_notify('overdue_worker_account', account);
  END IF;
END
$$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION overdue_worker_bills_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  account text;
BEGIN
  FOR account IN
    SELECT DISTINCT a FROM (VALUES
      (CASE WHEN TG_OP <> 'INSERT' THEN OLD.account_id END),
      (CASE WHEN TG_OP <> 'DELETE' THEN NEW.account_id END)) AS v(a)
    WHERE a IS NOT NULL
  LOOP
    UPDATE accounts
       SET earliest_unpaid_due_at = (
             SELECT min(b.due_at) FROM bills b
              WHERE b.account_id = account AND b.status = 'unpaid' AND b.amount_minor > b.paid_minor)
     WHERE id = account;
    PERFORM overdue_worker_notify(account);
  END LOOP;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER bills_changed AFTER INSERT OR UPDATE OR DELETE ON bills
FOR EACH ROW EXECUTE FUNCTION overdue_worker_bills_changed();
--> statement-breakpoint
CREATE OR REPLACE FUNCTION overdue_worker_row_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'accounts' THEN
    PERFORM overdue_worker_notify(NEW.id);
  ELSE
    PERFORM overdue_worker_notify(NEW.account_id);
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER accounts_changed
AFTER INSERT OR UPDATE OF available_balance_minor, low_balance_threshold_minor, protection_custom,
  protection_amount_minor, protection_duration_seconds, time_zone, currency, plan_alert_thresholds
ON accounts FOR EACH ROW EXECUTE FUNCTION overdue_worker_row_changed();
--> statement-breakpoint
CREATE TRIGGER resource_plans_changed AFTER INSERT OR UPDATE ON resource_plans
FOR EACH ROW EXECUTE FUNCTION overdue_worker_row_changed();
--> statement-breakpoint
CREATE TRIGGER services_created AFTER INSERT ON services
FOR EACH ROW EXECUTE FUNCTION overdue_worker_row_changed();
--> statement-breakpoint
CREATE TRIGGER studio_instances_created AFTER INSERT ON studio_instances
FOR EACH ROW EXECUTE FUNCTION overdue_worker_row_changed();
--> statement-breakpoint
UPDATE accounts a
   SET earliest_unpaid_due_at = d.due
  FROM (SELECT account_id, min(due_at) AS due FROM bills
         WHERE status = 'unpaid' AND amount_minor > paid_minor GROUP BY account_id) d
 WHERE d.account_id = a.id;
