/**
 * Aborting, made to reach what it must end. undici ties a Request's signal to ours only weakly, so after a GC an
 * abort may reach neither the fetch nor the body still being read: everything here is held strongly, by a listener
 * on our signal, and every listener is removed once done (a long-lived caller signal would keep it otherwise).
 */
import { ProtocolError } from "./errors.js";

/** The longest delay setTimeout takes; a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer's delay, within what setTimeout takes (NaN: none). */
export function delay(ms: number): number {
  return Number.isNaN(ms) ? 0 : Math.min(Math.max(0, ms), MAX_TIMER_MS);
}

/** A controller aborted when `parent` aborts (with its reason) or `abort()` is called; `dispose()` unlinks it. */
export function linked(parent?: AbortSignal): { controller: AbortController; dispose: () => void } {
  const controller = new AbortController();
  if (!parent) return { controller, dispose: () => {} };
  const abort = () => controller.abort(parent.reason);
  if (parent.aborted) abort();
  else parent.addEventListener("abort", abort, { once: true });
  return { controller, dispose: () => parent.removeEventListener("abort", abort) };
}

/** `promise`, or the signal's reason once it aborts; `late` gets what `promise` gives after that (to release it). */
export function abortable<T>(promise: Promise<T>, signal?: AbortSignal, late?: (value: T) => void): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(signal.reason);
    if (signal.aborted) abort();
    else signal.addEventListener("abort", abort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener("abort", abort);
        if (signal.aborted) late?.(value);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", abort);
        reject(error);
      },
    );
  });
}

/**
 * Cancels `reader` when `signal` aborts, or when `idleMs` pass without a `touch()` (a read ending `done` then tells
 * the reader's user). `dispose()` once the reading is over.
 */
export function guard(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  signal?: AbortSignal,
  idleMs?: number,
): { touch: () => void; dispose: () => void } {
  const cancel = (reason?: unknown) => void reader.cancel(reason).catch(() => {});
  const abort = () => cancel(signal!.reason);
  if (signal?.aborted) abort();
  else signal?.addEventListener("abort", abort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const touch = () => {
    if (idleMs === undefined) return;
    clearTimeout(timer);
    timer = setTimeout(() => cancel(new Error("the stream was idle")), delay(idleMs));
  };
  touch();
  return {
    touch,
    dispose: () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", abort);
    },
  };
}

/**
 * The body's text, read to its end unless `signal` aborts first (which cancels it). A body longer than `maxBytes`
 * is cancelled and refused (`ProtocolError`): a server cannot make the client hold what it likes.
 */
export async function readText(response: Response, maxBytes: number, signal?: AbortSignal): Promise<string> {
  if (!response.body) return "";
  const reader = response.body.getReader();
  const watch = guard(reader, signal);
  const decoder = new TextDecoder();
  let text = "";
  let bytes = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      signal?.throwIfAborted();
      if (done) return text + decoder.decode();
      bytes += value.byteLength;
      if (bytes > maxBytes) {
        void reader.cancel().catch(() => {});
        throw new ProtocolError(`the answer is longer than ${maxBytes} bytes`);
      }
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    watch.dispose();
  }
}
