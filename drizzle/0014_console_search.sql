CREATE INDEX IF NOT EXISTS "accounts_id_prefix_idx" ON "accounts" USING btree ("id" text_pattern_ops);--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "accounts_email_prefix_idx" ON "accounts" USING btree (lower("email") text_pattern_ops);--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "accounts_phone_prefix_idx" ON "accounts" USING btree ("phone" text_pattern_ops);--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "accounts_enforcement_state_idx" ON "accounts" USING btree ("enforcement_state") WHERE "accounts"."enforcement_state" <> 'active';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "notifications_account_id_idx" ON "notifications" USING btree ("account_id","id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "notifications_failed_updated_idx" ON "notifications" USING btree ("updated_at") WHERE "notifications"."status" in ('failed', 'undeliverable');--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "outbox_account_id_idx" ON "outbox" USING btree ("account_id","id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "outbox_failed_updated_idx" ON "outbox" USING btree ("updated_at") WHERE "outbox"."status" = 'failed';