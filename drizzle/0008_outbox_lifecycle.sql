ALTER TABLE "outbox" DROP CONSTRAINT "outbox_status";--> statement-breakpoint
ALTER TABLE "outbox" ADD COLUMN "claim_token" text;--> statement-breakpoint
ALTER TABLE "outbox" ADD COLUMN "claim_expires_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "outbox_dispatched_id_idx" ON "outbox" USING btree ("id") WHERE "outbox"."status" = 'dispatched';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "outbox_unfinished_effect_service_idx" ON "outbox" USING btree (("payload" ->> 'serviceId'),"id") WHERE "outbox"."kind" = 'control-plane' and "outbox"."status" in ('pending', 'dispatched');--> statement-breakpoint
ALTER TABLE "outbox" ADD CONSTRAINT "outbox_status" CHECK ("outbox"."status" in ('pending', 'dispatched', 'done', 'failed', 'superseded'));