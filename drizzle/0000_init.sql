CREATE TABLE "accounts" (
	"id" text PRIMARY KEY NOT NULL,
	"currency" char(3) NOT NULL,
	"available_balance_minor" bigint DEFAULT 0 NOT NULL,
	"time_zone" text DEFAULT 'UTC' NOT NULL,
	"locale" text DEFAULT 'en' NOT NULL,
	"email" text,
	"phone" text,
	"notify_email" boolean DEFAULT true NOT NULL,
	"notify_sms" boolean DEFAULT true NOT NULL,
	"sms_opted_out" boolean DEFAULT false NOT NULL,
	"email_bounced" boolean DEFAULT false NOT NULL,
	"low_balance_threshold_minor" bigint,
	"protection_custom" boolean DEFAULT false NOT NULL,
	"protection_amount_minor" bigint,
	"protection_duration_seconds" integer,
	"plan_alert_thresholds" jsonb,
	"enforcement_state" text DEFAULT 'active' NOT NULL,
	"episode_seq" integer DEFAULT 0 NOT NULL,
	"episode_started_at" timestamp with time zone,
	"last_episode_ended_at" timestamp with time zone,
	"version" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "accounts_id_format" CHECK ("accounts"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "accounts_currency_format" CHECK ("accounts"."currency" ~ '^[A-Z]{3}$'),
	CONSTRAINT "accounts_balance_safe" CHECK ("accounts"."available_balance_minor" between -9007199254740991 and 9007199254740991),
	CONSTRAINT "accounts_time_zone_format" CHECK (length("accounts"."time_zone") between 1 and 64),
	CONSTRAINT "accounts_locale_format" CHECK ("accounts"."locale" ~ '^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$'),
	CONSTRAINT "accounts_email_format" CHECK ("accounts"."email" is null or "accounts"."email" ~ '^[^@\s]+@[^@\s]+$'),
	CONSTRAINT "accounts_phone_e164" CHECK ("accounts"."phone" is null or "accounts"."phone" ~ '^\+[1-9][0-9]{1,14}$'),
	CONSTRAINT "accounts_low_balance_threshold_safe" CHECK ("accounts"."low_balance_threshold_minor" is null or "accounts"."low_balance_threshold_minor" between 0 and 9007199254740991),
	CONSTRAINT "accounts_protection_amount_non_negative" CHECK ("accounts"."protection_amount_minor" is null or "accounts"."protection_amount_minor" between 0 and 9007199254740991),
	CONSTRAINT "accounts_protection_duration_positive" CHECK ("accounts"."protection_duration_seconds" is null or "accounts"."protection_duration_seconds" > 0),
	CONSTRAINT "accounts_protection_only_when_custom" CHECK ("accounts"."protection_custom" or ("accounts"."protection_amount_minor" is null and "accounts"."protection_duration_seconds" is null)),
	CONSTRAINT "accounts_plan_alert_thresholds_array" CHECK ("accounts"."plan_alert_thresholds" is null or jsonb_typeof("accounts"."plan_alert_thresholds") = 'array'),
	CONSTRAINT "accounts_enforcement_state" CHECK ("accounts"."enforcement_state" in ('active', 'protected', 'suspended')),
	CONSTRAINT "accounts_episode_seq_non_negative" CHECK ("accounts"."episode_seq" >= 0),
	CONSTRAINT "accounts_open_episode_has_seq" CHECK ("accounts"."episode_started_at" is null or "accounts"."episode_seq" > 0),
	CONSTRAINT "accounts_version_non_negative" CHECK ("accounts"."version" >= 0)
);
--> statement-breakpoint
CREATE TABLE "bills" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"product" text NOT NULL,
	"amount_minor" bigint NOT NULL,
	"paid_minor" bigint DEFAULT 0 NOT NULL,
	"issued_at" timestamp with time zone NOT NULL,
	"due_at" timestamp with time zone NOT NULL,
	"status" text DEFAULT 'unpaid' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "bills_id_format" CHECK ("bills"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "bills_product_format" CHECK (length("bills"."product") between 1 and 64 and "bills"."product" !~ '\s'),
	CONSTRAINT "bills_amount_non_negative" CHECK ("bills"."amount_minor" between 0 and 9007199254740991),
	CONSTRAINT "bills_paid_non_negative" CHECK ("bills"."paid_minor" between 0 and 9007199254740991),
	CONSTRAINT "bills_due_after_issue" CHECK ("bills"."due_at" >= "bills"."issued_at"),
	CONSTRAINT "bills_status" CHECK ("bills"."status" in ('unpaid', 'paid', 'void'))
);
--> statement-breakpoint
CREATE TABLE "enforcement_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"kind" text NOT NULL,
	"episode_seq" integer,
	"detail" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"actor" text DEFAULT 'daemon' NOT NULL,
	"idempotency_key" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "enforcement_events_idempotency_key_unique" UNIQUE("idempotency_key"),
	CONSTRAINT "enforcement_events_kind_format" CHECK (length("enforcement_events"."kind") between 1 and 64 and "enforcement_events"."kind" !~ '\s'),
	CONSTRAINT "enforcement_events_actor_not_blank" CHECK (length(btrim("enforcement_events"."actor")) between 1 and 200)
);
--> statement-breakpoint
CREATE TABLE "notifications" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"dedupe_key" text NOT NULL,
	"account_id" text NOT NULL,
	"channel" text NOT NULL,
	"template" text NOT NULL,
	"locale" text NOT NULL,
	"recipient" text NOT NULL,
	"params" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"provider_id" text,
	"message_id" text,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"not_before" timestamp with time zone DEFAULT now() NOT NULL,
	"sent_at" timestamp with time zone,
	"delivered_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "notifications_dedupe_key_unique" UNIQUE("dedupe_key"),
	CONSTRAINT "notifications_dedupe_key_format" CHECK (length("notifications"."dedupe_key") between 1 and 255 and position(':' in "notifications"."dedupe_key") = 0),
	CONSTRAINT "notifications_channel" CHECK ("notifications"."channel" in ('email', 'sms')),
	CONSTRAINT "notifications_template_format" CHECK (length("notifications"."template") between 1 and 64 and "notifications"."template" !~ '\s'),
	CONSTRAINT "notifications_status" CHECK ("notifications"."status" in ('pending', 'sending', 'sent', 'delivered', 'failed', 'undeliverable')),
	CONSTRAINT "notifications_attempts_non_negative" CHECK ("notifications"."attempts" >= 0),
	CONSTRAINT "notifications_recipient_not_blank" CHECK (length(btrim("notifications"."recipient")) > 0)
);
--> statement-breakpoint
CREATE TABLE "orders" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"product_type" text NOT NULL,
	"cash_paid_minor" bigint DEFAULT 0 NOT NULL,
	"voucher_paid_minor" bigint DEFAULT 0 NOT NULL,
	"coupon_paid_minor" bigint DEFAULT 0 NOT NULL,
	"promotion_id" text,
	"promotion_rules" jsonb,
	"gifts" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"resource_plan_id" text,
	"sdk_license_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"refunded_at" timestamp with time zone,
	CONSTRAINT "orders_id_account_unique" UNIQUE("id","account_id"),
	CONSTRAINT "orders_id_format" CHECK ("orders"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "orders_product_type" CHECK ("orders"."product_type" in ('payg', 'resource-plan', 'sdk-license', 'yearly-sdk')),
	CONSTRAINT "orders_cash_paid_non_negative" CHECK ("orders"."cash_paid_minor" between 0 and 9007199254740991),
	CONSTRAINT "orders_voucher_paid_non_negative" CHECK ("orders"."voucher_paid_minor" between 0 and 9007199254740991),
	CONSTRAINT "orders_coupon_paid_non_negative" CHECK ("orders"."coupon_paid_minor" between 0 and 9007199254740991),
	CONSTRAINT "orders_promotion_id_format" CHECK ("orders"."promotion_id" is null or "orders"."promotion_id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "orders_promotion_rules_object" CHECK ("orders"."promotion_rules" is null or jsonb_typeof("orders"."promotion_rules") = 'object'),
	CONSTRAINT "orders_gifts_array" CHECK (jsonb_typeof("orders"."gifts") = 'array'),
	CONSTRAINT "orders_refund_after_creation" CHECK ("orders"."refunded_at" is null or "orders"."refunded_at" >= "orders"."created_at")
);
--> statement-breakpoint
CREATE TABLE "outbox" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"idempotency_key" text NOT NULL,
	"kind" text NOT NULL,
	"account_id" text NOT NULL,
	"payload" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"available_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "outbox_idempotency_key_unique" UNIQUE("idempotency_key"),
	CONSTRAINT "outbox_idempotency_key_format" CHECK (length("outbox"."idempotency_key") between 1 and 255 and position(':' in "outbox"."idempotency_key") = 0),
	CONSTRAINT "outbox_kind_format" CHECK (length("outbox"."kind") between 1 and 64 and "outbox"."kind" !~ '\s'),
	CONSTRAINT "outbox_status" CHECK ("outbox"."status" in ('pending', 'dispatched', 'done', 'failed')),
	CONSTRAINT "outbox_attempts_non_negative" CHECK ("outbox"."attempts" >= 0)
);
--> statement-breakpoint
CREATE TABLE "resource_plans" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"kind" text NOT NULL,
	"total_units" bigint NOT NULL,
	"used_units" bigint DEFAULT 0 NOT NULL,
	"starts_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"purchased_at" timestamp with time zone NOT NULL,
	"alert_thresholds" jsonb,
	"sdk_license_id" text,
	"order_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "resource_plans_id_account_unique" UNIQUE("id","account_id"),
	CONSTRAINT "resource_plans_id_format" CHECK ("resource_plans"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "resource_plans_kind_format" CHECK (length("resource_plans"."kind") between 1 and 64 and "resource_plans"."kind" !~ '\s'),
	CONSTRAINT "resource_plans_total_non_negative" CHECK ("resource_plans"."total_units" between 0 and 9007199254740991),
	CONSTRAINT "resource_plans_used_non_negative" CHECK ("resource_plans"."used_units" between 0 and 9007199254740991),
	CONSTRAINT "resource_plans_used_within_total" CHECK ("resource_plans"."used_units" <= "resource_plans"."total_units"),
	CONSTRAINT "resource_plans_expires_after_start" CHECK ("resource_plans"."expires_at" > "resource_plans"."starts_at"),
	CONSTRAINT "resource_plans_alert_thresholds_array" CHECK ("resource_plans"."alert_thresholds" is null or jsonb_typeof("resource_plans"."alert_thresholds") = 'array')
);
--> statement-breakpoint
CREATE TABLE "sdk_licenses" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"kind" text NOT NULL,
	"activated_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "sdk_licenses_id_account_unique" UNIQUE("id","account_id"),
	CONSTRAINT "sdk_licenses_id_format" CHECK ("sdk_licenses"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "sdk_licenses_kind" CHECK ("sdk_licenses"."kind" in ('license', 'yearly-subscription'))
);
--> statement-breakpoint
CREATE TABLE "services" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"kind" text NOT NULL,
	"plan_type" text DEFAULT 'payg' NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"overdue_hold" boolean DEFAULT false NOT NULL,
	"operator_hold" boolean DEFAULT false NOT NULL,
	"overdue_episode_seq" integer,
	"suspended_at" timestamp with time zone,
	"resumed_at" timestamp with time zone,
	"released_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "services_id_account_unique" UNIQUE("id","account_id"),
	CONSTRAINT "services_id_format" CHECK ("services"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "services_kind" CHECK ("services"."kind" in ('streaming', 'recording', 'screenshots', 'studio', 'other')),
	CONSTRAINT "services_plan_type" CHECK ("services"."plan_type" in ('payg', 'duration')),
	CONSTRAINT "services_status" CHECK ("services"."status" in ('active', 'suspended', 'released')),
	CONSTRAINT "services_suspended_iff_held" CHECK ("services"."status" = 'released' or (("services"."status" = 'suspended') = ("services"."overdue_hold" or "services"."operator_hold"))),
	CONSTRAINT "services_released_at_iff_released" CHECK (("services"."status" = 'released') = ("services"."released_at" is not null)),
	CONSTRAINT "services_overdue_hold_has_episode" CHECK (not "services"."overdue_hold" or "services"."overdue_episode_seq" is not null),
	CONSTRAINT "services_overdue_episode_seq_positive" CHECK ("services"."overdue_episode_seq" is null or "services"."overdue_episode_seq" > 0)
);
--> statement-breakpoint
CREATE TABLE "studio_instances" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"service_id" text NOT NULL,
	"name" text NOT NULL,
	"streaming" boolean DEFAULT false NOT NULL,
	"release_due_at" timestamp with time zone,
	"release_episode_seq" integer,
	"released_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "studio_instances_id_format" CHECK ("studio_instances"."id" ~ '^[A-Za-z0-9_.-]{1,64}$'),
	CONSTRAINT "studio_instances_name_not_blank" CHECK (length(btrim("studio_instances"."name")) between 1 and 200),
	CONSTRAINT "studio_instances_release_pending_pair" CHECK (("studio_instances"."release_due_at" is null) = ("studio_instances"."release_episode_seq" is null)),
	CONSTRAINT "studio_instances_release_episode_seq_positive" CHECK ("studio_instances"."release_episode_seq" is null or "studio_instances"."release_episode_seq" > 0)
);
--> statement-breakpoint
CREATE TABLE "usage_records" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"product" text NOT NULL,
	"metric" text NOT NULL,
	"quantity" bigint NOT NULL,
	"recorded_at" timestamp with time zone NOT NULL,
	"source_id" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "usage_records_account_source_unique" UNIQUE("account_id","source_id"),
	CONSTRAINT "usage_records_product_format" CHECK (length("usage_records"."product") between 1 and 64 and "usage_records"."product" !~ '\s'),
	CONSTRAINT "usage_records_metric_format" CHECK (length("usage_records"."metric") between 1 and 64 and "usage_records"."metric" !~ '\s'),
	CONSTRAINT "usage_records_quantity_non_negative" CHECK ("usage_records"."quantity" between 0 and 9007199254740991),
	CONSTRAINT "usage_records_source_id_format" CHECK ("usage_records"."source_id" ~ '^[A-Za-z0-9_.-]{1,64}$')
);
--> statement-breakpoint
ALTER TABLE "bills" ADD CONSTRAINT "bills_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_resource_plan_same_account_fk" FOREIGN KEY ("resource_plan_id","account_id") REFERENCES "public"."resource_plans"("id","account_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "orders" ADD CONSTRAINT "orders_sdk_license_same_account_fk" FOREIGN KEY ("sdk_license_id","account_id") REFERENCES "public"."sdk_licenses"("id","account_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "resource_plans" ADD CONSTRAINT "resource_plans_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "resource_plans" ADD CONSTRAINT "resource_plans_sdk_license_same_account_fk" FOREIGN KEY ("sdk_license_id","account_id") REFERENCES "public"."sdk_licenses"("id","account_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "resource_plans" ADD CONSTRAINT "resource_plans_order_same_account_fk" FOREIGN KEY ("order_id","account_id") REFERENCES "public"."orders"("id","account_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sdk_licenses" ADD CONSTRAINT "sdk_licenses_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "services" ADD CONSTRAINT "services_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "studio_instances" ADD CONSTRAINT "studio_instances_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "studio_instances" ADD CONSTRAINT "studio_instances_service_same_account_fk" FOREIGN KEY ("service_id","account_id") REFERENCES "public"."services"("id","account_id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_account_id_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "bills_account_unpaid_idx" ON "bills" USING btree ("account_id") WHERE "bills"."status" = 'unpaid';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "bills_account_issued_idx" ON "bills" USING btree ("account_id","issued_at");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "bills_unpaid_due_idx" ON "bills" USING btree ("due_at","account_id") WHERE "bills"."status" = 'unpaid';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "enforcement_events_account_created_idx" ON "enforcement_events" USING btree ("account_id","created_at");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "notifications_pending_not_before_idx" ON "notifications" USING btree ("not_before") WHERE "notifications"."status" = 'pending';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "notifications_provider_message_idx" ON "notifications" USING btree ("provider_id","message_id") WHERE "notifications"."message_id" is not null;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "orders_account_created_idx" ON "orders" USING btree ("account_id","created_at");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "outbox_pending_available_idx" ON "outbox" USING btree ("available_at") WHERE "outbox"."status" = 'pending';--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "resource_plans_account_expires_idx" ON "resource_plans" USING btree ("account_id","expires_at");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "sdk_licenses_account_idx" ON "sdk_licenses" USING btree ("account_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "services_account_idx" ON "services" USING btree ("account_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "studio_instances_account_idx" ON "studio_instances" USING btree ("account_id");--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "studio_instances_release_due_idx" ON "studio_instances" USING btree ("release_due_at") WHERE "studio_instances"."released_at" is null and "studio_instances"."release_due_at" is not null;--> statement-breakpoint
CREATE INDEX IF NOT EXISTS "usage_records_account_recorded_idx" ON "usage_records" USING btree ("account_id","recorded_at");