/**
 * A wake-up signal for one waiter. A wake that arrives while the waiter is busy is remembered (once),
 * so the next wait returns at once: the waiter never sleeps through a change it has not read yet.
 */
export class Wakeup {
  private pending = false;
  private release: (() => void) | undefined;

  wake(): void {
    if (this.release) this.release();
    else this.pending = true;
  }

  /** Resolves true at the next wake (at once if one is pending), or false after `ms`, whichever comes first. */
  wait(ms: number): Promise<boolean> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const done = (woken: boolean) => {
        clearTimeout(timer);
        this.release = undefined;
        resolve(woken);
      };
      const timer = setTimeout(() => done(false), ms);
      this.release = () => done(true);
    });
  }
}
