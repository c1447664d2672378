import * as v8 from "node:v8";
import * as vm from "node:vm";

/** The garbage collector, without --expose-gc: for tests of what memory is released. */
export function collector(): () => void {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
}

let collect: (() => void) | undefined;

/** The heap in use (bytes) right after a full collection: for tests of what memory a structure holds. */
export function heapUsedAfterGc(): number {
  (collect ??= collector())();
  return process.memoryUsage().heapUsed;
}
