import { createRequire } from "node:module";
import { afterEach, describe, expect, it } from "vitest";

/**
 * postgres.js's internal queue, as scripts/patches/postgres+3.4.9.patch leaves it, in each of its three builds (ES
 * modules for Node and Deno, CommonJS, and the Workers one). Unpatched, a queue that never ran empty (a busy pool's
 * connections) kept a slot for every item ever shifted out, and `remove`, which the pool calls on every query,
 * scanned them all: under steady load each query cost more than the one before (a server profile showed the scan
 * at ~8 µs per request after 50,000 requests).
 */
type Queue<T> = { readonly length: number; push(x: T): T; shift(): T; remove(x: T): T | null };
type MakeQueue = <T>(initial?: T[]) => Queue<T>;

const root = new URL("../../node_modules/postgres/", import.meta.url);
const builds: [string, MakeQueue][] = [
  ["src (ES modules)", ((await import(new URL("src/queue.js", root).href)) as { default: MakeQueue }).default],
  ["cf/src (Workers)", ((await import(new URL("cf/src/queue.js", root).href)) as { default: MakeQueue }).default],
  ["cjs/src (CommonJS)", createRequire(import.meta.url)(new URL("cjs/src/queue.js", root).pathname) as MakeQueue],
];

const indexOf = Array.prototype.indexOf;
afterEach(() => {
  Array.prototype.indexOf = indexOf;
});

describe.each(builds)("postgres.js queue, %s (patched)", (_, Queue) => {
  it("keeps order, removes any item, and stays as long as what it holds when it never runs empty", () => {
    // How long the arrays `remove` searched were: the queue's storage.
    let longest = 0;
    Array.prototype.indexOf = function (this: unknown[], ...args: Parameters<typeof indexOf>) {
      longest = Math.max(longest, this.length);
      return indexOf.apply(this, args);
    };
    const queue = Queue<{ n: number }>();
    const held = [{ n: -1 }, { n: 0 }];
    held.forEach((item) => queue.push(item));
    for (let n = 1; n <= 100_000; n++) {
      const item = { n };
      queue.push(item);
      expect(queue.shift()).toBe(held.shift());
      held.push(item);
      // A connection leaving the queue out of turn, as the pool's `move` does, and coming back.
      if (n % 10 === 0) {
        expect(queue.remove(held[0]!)).toBe(held[0]);
        held.push(queue.push(held.shift()!));
      }
    }
    expect(queue.length).toBe(held.length);
    expect(queue.remove({ n: 0 })).toBeNull();
    expect(held.map(() => queue.shift())).toEqual(held);
    expect(queue.length).toBe(0);
    expect(longest).toBeLessThan(4096);
  });
});
