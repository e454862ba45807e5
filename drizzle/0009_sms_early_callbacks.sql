CREATE TABLE "sms_early_callbacks" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"provider_id" text NOT NULL,
	"message_id" text NOT NULL,
	"status" text NOT NULL,
	"error_code" text,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "sms_early_callbacks_message_status_unique" UNIQUE("provider_id","message_id","status"),
	CONSTRAINT "sms_early_callbacks_status" CHECK ("sms_early_callbacks"."status" in ('sent', 'delivered', 'undeliverable'))
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "sms_early_callbacks_received_idx" ON "sms_early_callbacks" USING btree ("received_at");