CREATE TABLE "payment_reversals" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"payment_id" text NOT NULL,
	"reason" text,
	"source_version" bigint DEFAULT 0 NOT NULL,
	"source_hash" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "payment_reversals_payment_unique" UNIQUE("payment_id"),
	CONSTRAINT "payment_reversals_source_version_safe" CHECK ("payment_reversals"."source_version" between 0 and 9007199254740991),
	CONSTRAINT "payment_reversals_id_format" CHECK ("payment_reversals"."id" ~ '^[A-Za-z0-9_.-]{1,64}$')
);
--> statement-breakpoint
CREATE TABLE "payments" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"amount_minor" bigint NOT NULL,
	"bill_id" text,
	"allocations" jsonb,
	"balance_credit_minor" bigint DEFAULT 0 NOT NULL,
	"reversed_by" text,
	"source_version" bigint DEFAULT 0 NOT NULL,
	"source_hash" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "payments_source_version_safe" CHECK ("payments"."source_version" between 0 and 9007199254740991),
	CONSTRAINT "payments_id_format" CHECK ("payments"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "payments_amount_positive" CHECK ("payments"."amount_minor" between 1 and 9007199254740991),
	CONSTRAINT "payments_balance_credit_safe" CHECK ("payments"."balance_credit_minor" between 0 and 9007199254740991),
	CONSTRAINT "payments_allocations_array" CHECK ("payments"."allocations" is null or jsonb_typeof("payments"."allocations") = 'array')
);
--> statement-breakpoint
CREATE TABLE "topups" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"amount_minor" bigint NOT NULL,
	"source_version" bigint DEFAULT 0 NOT NULL,
	"source_hash" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "topups_source_version_safe" CHECK ("topups"."source_version" between 0 and 9007199254740991),
	CONSTRAINT "topups_id_format" CHECK ("topups"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "topups_amount_positive" CHECK ("topups"."amount_minor" between 1 and 9007199254740991)
);
--> statement-breakpoint
ALTER TABLE "accounts" ADD COLUMN "source_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "accounts" ADD COLUMN "source_hash" text;--> statement-breakpoint
ALTER TABLE "bills" ADD COLUMN "source_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "bills" ADD COLUMN "source_hash" text;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "source_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "orders" ADD COLUMN "source_hash" text;--> statement-breakpoint
ALTER TABLE "resource_plans" ADD COLUMN "source_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "resource_plans" ADD COLUMN "source_hash" text;--> statement-breakpoint
ALTER TABLE "sdk_licenses" ADD COLUMN "source_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "sdk_licenses" ADD COLUMN "source_hash" text;--> statement-breakpoint
ALTER TABLE "services" ADD COLUMN "source_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "services" ADD COLUMN "source_hash" text;--> statement-breakpoint
ALTER TABLE "studio_instances" ADD COLUMN "source_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "studio_instances" ADD COLUMN "source_hash" text;--> statement-breakpoint
ALTER TABLE "usage_records" ADD COLUMN "source_version" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "usage_records" ADD COLUMN "source_hash" text;--> statement-breakpoint
ALTER TABLE "payment_reversals" ADD CONSTRAINT "payment_reversals_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "payment_reversals" ADD CONSTRAINT "payment_reversals_payment_id_payments_id_fk" FOREIGN KEY ("payment_id") REFERENCES "public"."payments"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "payments" ADD CONSTRAINT "payments_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "topups" ADD CONSTRAINT "topups_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "payments_account_idx" ON "payments" USING btree ("account_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "topups_account_idx" ON "topups" USING btree ("account_id");--> statement-breakpoint
ALTER TABLE "accounts" ADD CONSTRAINT "accounts_source_version_safe" CHECK ("accounts"."source_version" between 0 and 9007199254740991);--> statement-breakpoint
ALTER TABLE "bills" ADD CONSTRAINT "bills_source_version_safe" CHECK ("bills"."source_version" between 0 and 9007199254740991);--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_source_version_safe" CHECK ("orders"."source_version" between 0 and 9007199254740991);--> statement-breakpoint
ALTER TABLE "resource_plans" ADD CONSTRAINT "resource_plans_source_version_safe" CHECK ("resource_plans"."source_version" between 0 and 9007199254740991);--> statement-breakpoint
ALTER TABLE "sdk_licenses" ADD CONSTRAINT "sdk_licenses_source_version_safe" CHECK ("sdk_licenses"."source_version" between 0 and 9007199254740991);--> statement-breakpoint
ALTER TABLE "services" ADD CONSTRAINT "services_source_version_safe" CHECK ("services"."source_version" between 0 and 9007199254740991);--> statement-breakpoint
ALTER TABLE "studio_instances" ADD CONSTRAINT "studio_instances_source_version_safe" CHECK ("studio_instances"."source_version" between 0 and 9007199254740991);--> statement-breakpoint
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_source_version_safe" CHECK ("usage_records"."source_version" between 0 and 9007199254740991);--> statement-breakpoint
-- Nothing older overwrites something newer, whoever writes: an update may keep or raise a row's
-- source_version, never lower it.
CREATE OR REPLACE FUNCTION overdue_worker_source_version_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.source_version < OLD.source_version THEN
    RAISE EXCEPTION '%: source_version of % would go back from % to %',
      TG_TABLE_NAME, OLD.id, OLD.source_version, NEW.source_version
      USING ERRCODE = 'check_violation', CONSTRAINT = TG_TABLE_NAME || '_source_version_never_lowered';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER accounts_source_version_guard BEFORE UPDATE OF source_version ON accounts
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER bills_source_version_guard BEFORE UPDATE OF source_version ON bills
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER services_source_version_guard BEFORE UPDATE OF source_version ON services
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER studio_instances_source_version_guard BEFORE UPDATE OF source_version ON studio_instances
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER sdk_licenses_source_version_guard BEFORE UPDATE OF source_version ON sdk_licenses
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER orders_source_version_guard BEFORE UPDATE OF source_version ON orders
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER resource_plans_source_version_guard BEFORE UPDATE OF source_version ON resource_plans
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER usage_records_source_version_guard BEFORE UPDATE OF source_version ON usage_records
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER payments_source_version_guard BEFORE UPDATE OF source_version ON payments
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER topups_source_version_guard BEFORE UPDATE OF source_version ON topups
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
CREATE TRIGGER payment_reversals_source_version_guard BEFORE UPDATE OF source_version ON payment_reversals
FOR EACH ROW EXECUTE FUNCTION overdue_worker_source_version_guard();
--> statement-breakpoint
-- Paid amounts come only from payments: an update that lowers bills.paid_minor is refused unless
-- the transaction says it is undoing a payment's allocation (overdue_worker.paid_adjustment =
-- 'reversal') or handing an overpaid bill's surplus to the balance after its amount was lowered
-- or it was voided ('bill-revision'). The daemon's ingest sets it with SET LOCAL.
CREATE OR REPLACE FUNCTION overdue_worker_bills_paid_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.paid_minor < OLD.paid_minor
     AND coalesce(current_setting('overdue_worker.paid_adjustment', true), '') NOT IN ('reversal', 'bill-revision') THEN
    RAISE EXCEPTION 'bills: paid_minor of % would go down from % to %; only a payment reversal lowers a paid amount',
      OLD.id, OLD.paid_minor, NEW.paid_minor
      USING ERRCODE = 'check_violation', CONSTRAINT = 'bills_paid_lowered_only_by_reversal';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER bills_paid_guard BEFORE UPDATE OF paid_minor ON bills
FOR EACH ROW EXECUTE FUNCTION overdue_worker_bills_paid_guard();
--> statement-breakpoint
-- Payments and top-ups ingested before this migration were kept only as events: record them, so
-- that a re-sent one is a duplicate and not applied twice. Their allocations were not kept. The
-- hash is the one ingest computes (sha256 of the body's JSON with keys in order, without version).
INSERT INTO payments (id, account_id, amount_minor, bill_id, allocations, source_version, source_hash, created_at)
SELECT e.detail->>'paymentId', e.account_id, (e.detail->>'amountMinor')::bigint, e.detail->>'billId', NULL, 0,
       encode(sha256(convert_to(
         '{"accountId":' || to_json(e.account_id)::text
         || ',"amountMinor":' || (e.detail->>'amountMinor')
         || coalesce(',"billId":' || to_json(e.detail->>'billId')::text, '')
         || ',"id":' || to_json(e.detail->>'paymentId')::text || '}', 'UTF8')), 'hex'),
       e.created_at
  FROM enforcement_events e
 WHERE e.kind = 'payment-received' AND e.idempotency_key LIKE 'payment-v1-%'
   AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = e.account_id)
ON CONFLICT (id) DO NOTHING;
--> statement-breakpoint
INSERT INTO topups (id, account_id, amount_minor, source_version, source_hash, created_at)
SELECT e.detail->>'topupId', e.account_id, (e.detail->>'amountMinor')::bigint, 0,
       encode(sha256(convert_to(
         '{"accountId":' || to_json(e.account_id)::text
         || ',"amountMinor":' || (e.detail->>'amountMinor')
         || ',"id":' || to_json(e.detail->>'topupId')::text || '}', 'UTF8')), 'hex'),
       e.created_at
  FROM enforcement_events e
 WHERE e.kind = 'topup-received' AND e.idempotency_key LIKE 'topup-v1-%'
   AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = e.account_id)
ON CONFLICT (id) DO NOTHING;
--> statement-breakpoint
-- The bills trigger of migration 0002, per statement instead of per row: a batch of 1,000 bills
-- updates each touched account's earliest_unpaid_due_at (and NOTIFYs it) once, not once per bill.
-- Same effect and same lock: the account rows are updated in the writing transaction.
DROP TRIGGER IF EXISTS bills_changed ON bills;
--> statement-breakpoint
DROP FUNCTION IF EXISTS overdue_worker_bills_changed();
--> statement-breakpoint
CREATE OR REPLACE FUNCTION overdue_worker_bills_refresh(ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  -- Lock in id order (as ingest does), then one update for all.
  PERFORM 1 FROM accounts WHERE id = ANY(ids) ORDER BY id FOR UPDATE;
  UPDATE accounts a
     SET earliest_unpaid_due_at = (
           SELECT min(b.due_at) FROM bills b
            WHERE b.account_id = a.id AND b.status = 'unpaid' AND b.amount_minor > b.paid_minor)
   WHERE a.id = ANY(ids);
  PERFORM overdue_worker_notify(x) FROM unnest(ids) AS x;
END
$$;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION overdue_worker_bills_changed_set() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  -- A transition table exists only for the events that have it.
  IF TG_OP = 'INSERT' THEN
    PERFORM overdue_worker_bills_refresh(ARRAY(SELECT DISTINCT account_id FROM changed_new));
  ELSIF TG_OP = 'UPDATE' THEN
    PERFORM overdue_worker_bills_refresh(ARRAY(
      SELECT account_id FROM changed_new UNION SELECT account_id FROM changed_old));
  ELSE
    PERFORM overdue_worker_bills_refresh(ARRAY(SELECT DISTINCT account_id FROM changed_old));
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
CREATE TRIGGER bills_inserted AFTER INSERT ON bills REFERENCING NEW TABLE AS changed_new
FOR EACH STATEMENT EXECUTE FUNCTION overdue_worker_bills_changed_set();
--> statement-breakpoint
CREATE TRIGGER bills_updated AFTER UPDATE ON bills
REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
FOR EACH STATEMENT EXECUTE FUNCTION overdue_worker_bills_changed_set();
--> statement-breakpoint
CREATE TRIGGER bills_deleted AFTER DELETE ON bills REFERENCING OLD TABLE AS changed_old
FOR EACH STATEMENT EXECUTE FUNCTION overdue_worker_bills_changed_set();
