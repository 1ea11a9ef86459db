/** What a command gets from the process: output streams and the cancel signal (Ctrl-C, SIGTERM). */
export interface CommandIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  signal: AbortSignal;
}
