ALTER TABLE "notifications" ADD COLUMN "claim_token" text;--> statement-breakpoint
ALTER TABLE "notifications" ADD COLUMN "claim_expires_at" timestamp with time zone;