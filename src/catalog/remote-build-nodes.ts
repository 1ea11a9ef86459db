/** Remote build nodes (IMS `/remote-build-nodes`): a dict by xname, in registration order, no soft delete. */
import type { Sql } from "./sql.js";
import type { RemoteBuildNodeRecord } from "./records.js";

export class RemoteBuildNodes {
  constructor(private readonly sql: Sql) {}

  /** The JSON array of remote build node records, in the order they were first registered. */
  async remoteBuildNodesJson(): Promise<string> {
    const rows = await this.sql.query<{ body: string | null }>("SELECT coalesce(json_agg(doc ORDER BY seq), '[]')::text AS body FROM remote_build_nodes");
    return rows[0]?.body ?? "[]";
  }

  async remoteBuildNodes(): Promise<RemoteBuildNodeRecord[]> {
    const rows = await this.sql.query<{ doc: RemoteBuildNodeRecord }>("SELECT doc FROM remote_build_nodes ORDER BY seq");
    return rows.map((r) => r.doc);
  }

  async remoteBuildNode(xname: string): Promise<RemoteBuildNodeRecord | undefined> {
    const rows = await this.sql.query<{ doc: RemoteBuildNodeRecord }>("SELECT doc FROM remote_build_nodes WHERE xname = $1", [xname]);
    return rows[0]?.doc;
  }

  /** Registers a node; registering it again replaces the record and keeps its place (IMS stores a dict by xname). */
  async putRemoteBuildNode(doc: RemoteBuildNodeRecord): Promise<RemoteBuildNodeRecord> {
    await this.sql.query("INSERT INTO remote_build_nodes (xname, doc) VALUES ($1, $2) ON CONFLICT (xname) DO UPDATE SET doc = excluded.doc", [doc.xname, JSON.stringify(doc)]);
    return doc;
  }

  /** Removes one node (hard delete: IMS keeps no deleted remote build nodes); false when unknown. */
  async removeRemoteBuildNode(xname: string): Promise<boolean> {
    const rows = await this.sql.query("DELETE FROM remote_build_nodes WHERE xname = $1 RETURNING xname", [xname]);
    return rows.length > 0;
  }

  async removeAllRemoteBuildNodes(): Promise<void> {
    await this.sql.query("DELETE FROM remote_build_nodes");
  }
}
