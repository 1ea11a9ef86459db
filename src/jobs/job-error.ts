import { KilnError } from "../errors.js";

/** An error that ends a job, in the words the job record's kiln.error shows. */
export function jobError(message: string): KilnError {
  return new KilnError("JOB_FAILED", message);
}
