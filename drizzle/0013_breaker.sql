CREATE TABLE "breaker_ledger" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"decision_key" text NOT NULL,
	"account_id" text NOT NULL,
	"kind" text NOT NULL,
	"status" text NOT NULL,
	"detail" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"trip_seq" integer,
	"decided_at" timestamp with time zone DEFAULT now() NOT NULL,
	"settled_at" timestamp with time zone,
	"settled_by" text,
	"reason" text,
	CONSTRAINT "breaker_ledger_key_unique" UNIQUE("decision_key"),
	CONSTRAINT "breaker_ledger_kind" CHECK ("breaker_ledger"."kind" in ('suspend', 'release')),
	CONSTRAINT "breaker_ledger_status" CHECK ("breaker_ledger"."status" in ('allowed', 'held', 'approved', 'rejected'))
);
--> statement-breakpoint
CREATE TABLE "breaker_state" (
	"id" integer PRIMARY KEY NOT NULL,
	"enabled" boolean DEFAULT true NOT NULL,
	"count_limit" integer DEFAULT 100 NOT NULL,
	"window_seconds" integer DEFAULT 600 NOT NULL,
	"share_milli_pct" integer DEFAULT 1000 NOT NULL,
	"tripped_at" timestamp with time zone,
	"trip_seq" integer DEFAULT 0 NOT NULL,
	"alerted_seq" integer DEFAULT 0 NOT NULL,
	"reset_at" timestamp with time zone,
	"good_standing" bigint DEFAULT 0 NOT NULL,
	"counted_at" timestamp with time zone,
	CONSTRAINT "breaker_state_single_row" CHECK ("breaker_state"."id" = 1),
	CONSTRAINT "breaker_state_count_positive" CHECK ("breaker_state"."count_limit" > 0),
	CONSTRAINT "breaker_state_window_positive" CHECK ("breaker_state"."window_seconds" > 0),
	CONSTRAINT "breaker_state_share_range" CHECK ("breaker_state"."share_milli_pct" between 0 and 100000),
	CONSTRAINT "breaker_state_seq_order" CHECK ("breaker_state"."alerted_seq" <= "breaker_state"."trip_seq")
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "breaker_ledger_admitted_idx" ON "breaker_ledger" USING btree ("decided_at") WHERE "breaker_ledger"."kind" = 'suspend' and "breaker_ledger"."status" = 'allowed';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "breaker_ledger_held_idx" ON "breaker_ledger" USING btree ("id") WHERE "breaker_ledger"."status" = 'held';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "breaker_ledger_decided_idx" ON "breaker_ledger" USING btree ("decided_at");--> statement-breakpoint
-- The one row every evaluation that decides a suspension reads; the defaults are SUSPENSION_BREAKER's.
INSERT INTO "breaker_state" ("id") VALUES (1) ON CONFLICT DO NOTHING;
