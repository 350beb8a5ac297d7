// The line between a user's mistake and a bug: every error that is the user's to fix (bad
// input, bad options, a missing provider) is a UserError; `kd` prints those as one line and
// exits 2, and prints the full stack for anything else.

/**
 * An error the user can fix: its message says what is wrong, where, and how to fix it. Every
 * such error kd throws is one of its subclasses (OptionError, ConfigError, DataError,
 * FormatError, CacheMismatchError, DeviceError, …); `kd` prints them as one line and exits 2.
 *
 * @example
 * ```ts
 * import { getMethod, UserError } from 'kd-toolkit';
 * try {
 *   getMethod('kdd');
 * } catch (e) {
 *   if (!(e instanceof UserError)) throw e; // a bug: keep the stack
 *   console.log(`${e.name}: ${e.message}`);
 *   // OptionError: Unknown loss 'kdd'. Known: ce, kd, dtkd, lelp
 * }
 * ```
 */
export class UserError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'UserError';
  }
}

/** An option or argument value that is out of range or malformed; the message names the option. */
export class OptionError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'OptionError';
  }
}
