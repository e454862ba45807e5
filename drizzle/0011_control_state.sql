CREATE TABLE "control_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"detail" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"actor" text NOT NULL,
	"reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "control_events_kind_format" CHECK (length("control_events"."kind") between 1 and 64 and "control_events"."kind" !~ '\s'),
	CONSTRAINT "control_events_actor_not_blank" CHECK (length(btrim("control_events"."actor")) between 1 and 200)
);
--> statement-breakpoint
CREATE TABLE "control_state" (
	"id" integer PRIMARY KEY NOT NULL,
	"enforcement_mode" text DEFAULT 'enforce' NOT NULL,
	"source" text DEFAULT 'config' NOT NULL,
	"changed_by" text DEFAULT 'config' NOT NULL,
	"reason" text,
	"version" bigint DEFAULT 1 NOT NULL,
	"changed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "control_state_single_row" CHECK ("control_state"."id" = 1),
	CONSTRAINT "control_state_mode" CHECK ("control_state"."enforcement_mode" in ('enforce', 'shadow', 'off')),
	CONSTRAINT "control_state_source" CHECK ("control_state"."source" in ('config', 'operator'))
);
--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "control_events_created_idx" ON "control_events" USING btree ("created_at");--> statement-breakpoint
-- The one row every daemon reads; a database that predates it starts in enforce mode, as before.
INSERT INTO "control_state" ("id") VALUES (1) ON CONFLICT DO NOTHING;
