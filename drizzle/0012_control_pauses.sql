CREATE TABLE "control_pauses" (
	"kind" text PRIMARY KEY NOT NULL,
	"reason" text NOT NULL,
	"paused_by" text NOT NULL,
	"paused_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "control_pauses_kind" CHECK ("control_pauses"."kind" in ('suspensions', 'releases', 'messages')),
	CONSTRAINT "control_pauses_reason_not_blank" CHECK (length(btrim("control_pauses"."reason")) between 1 and 500)
);
