/** The typed client's caps on what it reads; the server's configuration keeps its answers within them (src/config.ts). */

/** The most bytes of one answer the client reads: far above any answer the server gives (a page is at most MAX_PAGE_BYTES). */
export const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

/** The most characters of one stream event the client holds: far above any message the server stores, yet bounded. */
export const MAX_EVENT_LENGTH = 16 * 1024 * 1024;
