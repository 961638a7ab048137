/** The sessions table of a gateway's PostgreSQL history, read over a connection of its own (as an operator would). */
import pg from 'pg';

export interface PgSessionRow {
  id: string;
  gateway_id: string;
  user: string;
  status: string;
  close_reason: string | null;
  /** BIGINT columns arrive as strings. */
  started_at: string;
  ended_at: string | null;
  bytes_in: string;
}

/** Every session row, the oldest first. */
export async function pgSessionRows(connectionString: string): Promise<PgSessionRow[]> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<PgSessionRow>('SELECT id, gateway_id, "user", status, close_reason, started_at, ended_at, bytes_in FROM sessions ORDER BY started_at')).rows;
  } finally {
    await client.end();
  }
}
