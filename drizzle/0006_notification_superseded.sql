ALTER TABLE "notifications" DROP CONSTRAINT "notifications_status";--> statement-breakpoint
ALTER TABLE "notifications" ADD CONSTRAINT "notifications_status" CHECK ("notifications"."status" in ('pending', 'sending', 'sent', 'delivered', 'failed', 'undeliverable', 'superseded'));--> statement-breakpoint
CREATE INDEX "notifications_account_episode_idx" ON "notifications" USING btree ("account_id",("params" ->> 'episodeSeq'));
