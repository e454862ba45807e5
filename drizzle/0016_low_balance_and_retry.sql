ALTER TABLE "accounts" ADD COLUMN "low_balance" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "notifications" ADD COLUMN "retried_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "accounts_low_balance_idx" ON "accounts" USING btree ("id") WHERE "accounts"."low_balance";