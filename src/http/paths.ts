/** Where the browser pages live (one place, so the pages can link to each other). */

/** The queue dashboard (bull-board). */
export const DASHBOARD_PATH = '/admin/queues';
/** The safety valves' page. */
export const SAFETY_PATH = '/admin/safety';
/** The operator console: the fleet overview, and account search and pages under it. */
export const CONSOLE_PATH = '/admin';
export const ACCOUNTS_PATH = '/admin/accounts';
