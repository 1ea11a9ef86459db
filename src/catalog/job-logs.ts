/** Job logs: lines a job's worker wrote, read back in order from a sequence number. */
import type { Sql } from "./sql.js";

export interface LogChunk {
  seq: number;
  text: string;
}

export class JobLogs {
  constructor(private readonly sql: Sql) {}

  async appendLog(jobId: string, text: string): Promise<void> {
    if (text === "") return;
    await this.sql.query("INSERT INTO job_logs (job_id, text) VALUES ($1, $2)", [jobId, text]);
  }

  async readLog(jobId: string, afterSeq = 0, limit = 1000): Promise<LogChunk[]> {
    // Ordered by the bigint column: the text alias `seq` would sort "10" before "9".
    const rows = await this.sql.query<{ seq: string; text: string }>("SELECT seq::text AS seq, text FROM job_logs WHERE job_id = $1 AND job_logs.seq > $2 ORDER BY job_logs.seq LIMIT $3", [jobId, afterSeq, limit]);
    return rows.map((r) => ({ seq: Number(r.seq), text: r.text }));
  }
}
