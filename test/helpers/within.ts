/** Settles `promise`, or reports it still pending after `ms`: a regression fails there, not at the test's timeout. */
export const within = <T>(promise: Promise<T>, ms: number): Promise<T | "pending"> =>
  Promise.race([promise, new Promise<"pending">((resolve) => setTimeout(() => resolve("pending"), ms))]);
