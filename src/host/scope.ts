/**
 * A Scope holds host resources (mounts, temp dirs, child processes) and releases them in reverse
 * order of acquisition, whether the block that made them returns, throws or is aborted.
 *
 *   await using scope = new Scope();
 *   const root = scope.use(await mountOverlay(...));
 *
 * Node 20 has Symbol.asyncDispose but not AsyncDisposableStack, hence this small class
 * (after changesets' ponyfill and osbuild's MountGuard). Release errors are collected: every
 * resource gets its chance, and the first error is rethrown afterwards.
 */
export interface Releasable {
  release(): Promise<void>;
}

export class Scope implements AsyncDisposable {
  private readonly stack: Array<() => Promise<void>> = [];
  private released = false;

  /** Registers a resource and returns it, so acquisition and registration are one expression. */
  use<T extends Releasable>(resource: T): T {
    this.defer(() => resource.release());
    return resource;
  }

  /** Registers a cleanup step. */
  defer(fn: () => Promise<void> | void): void {
    if (this.released) throw new Error("Scope.defer after release");
    this.stack.push(async () => {
      await fn();
    });
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    let first: unknown;
    while (this.stack.length > 0) {
      const fn = this.stack.pop()!;
      try {
        await fn();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== undefined) throw first;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.release();
  }
}
