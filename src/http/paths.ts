/** Where the browser pages live (one place, so the pages can link to each other). */

/** The queue dashboard (bull-board). */
export const DASHBOARD_PATH = '/admin/queues';
/** The safety valves' page. */
export const SAFETY_PATH = '/admin/safety';
