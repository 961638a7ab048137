/**
 * Fleet metrics (config `fleet`): the Redis link, the rate-lease rounds and their latency. Read on scrape from
 * the fleet's status; the round histogram is fed by the lease client's round listener (once per round, never
 * per packet). No per-user series: a fleet serves many users, the counts say how many are leased.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { FleetStatus } from '../fleet/fleet.js';
import type { RoundListener } from '../fleet/rate-leases.js';

export interface FleetMetricsSource {
  readonly status: FleetStatus;
  onRound(listener: RoundListener): () => void;
}

/** Lease rounds take a Redis round trip: 0.5 ms on a LAN up to the 500 ms command timeout. */
const ROUND_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1];

/** Registers the fleet metrics on `registry`; returns the unsubscribe of the round listener. */
export function registerFleetMetrics(registry: Registry, fleet: FleetMetricsSource): () => void {
  const registers = [registry];
  new Gauge({
    name: 'quicgate_fleet_link_up',
    help: '1 while the Redis link of the fleet is up, else 0 (local fallbacks in force).',
    registers,
    collect() {
      this.set(fleet.status.link === 'up' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'quicgate_fleet_rate_fallback',
    help: '1 while the rate lease rounds fail and every user runs at fallback_share of their limit, else 0.',
    registers,
    collect() {
      this.set(fleet.status.rate.state === 'fallback' ? 1 : 0);
    },
  });
  new Gauge({
    name: 'quicgate_fleet_rate_users',
    help: 'Connected limited users in the last rate lease round.',
    registers,
    collect() {
      this.set(fleet.status.rate.users);
    },
  });
  new Counter({
    name: 'quicgate_fleet_lease_rounds_total',
    help: 'Rate lease rounds since start: ok, failed (fallback shares), skipped (the previous round was still in flight).',
    labelNames: ['outcome'],
    registers,
    collect() {
      const { roundsOk, roundsFailed, roundsSkipped } = fleet.status.rate;
      this.reset();
      this.inc({ outcome: 'ok' }, roundsOk);
      this.inc({ outcome: 'failed' }, roundsFailed);
      this.inc({ outcome: 'skipped' }, roundsSkipped);
    },
  });
  new Counter({
    name: 'quicgate_fleet_address_claims_total',
    help: 'Tunnel address claims in Redis: ok, conflict (another gateway held it; the next one was tried).',
    labelNames: ['outcome'],
    registers,
    collect() {
      const { claims, conflicts } = fleet.status.addresses;
      this.reset();
      this.inc({ outcome: 'ok' }, claims);
      this.inc({ outcome: 'conflict' }, conflicts);
    },
  });
  new Counter({
    name: 'quicgate_fleet_address_fallbacks_total',
    help: 'Sessions by how the fleet could not confirm a fresh address: reserve (got a reserve pair), refused (reserve spent), renew_conflict (ended: another gateway held the address).',
    labelNames: ['outcome'],
    registers,
    collect() {
      const { fallbacks, reserveEmpty, renewConflicts } = fleet.status.addresses;
      this.reset();
      this.inc({ outcome: 'reserve' }, fallbacks);
      this.inc({ outcome: 'refused' }, reserveEmpty);
      this.inc({ outcome: 'renew_conflict' }, renewConflicts);
    },
  });
  new Gauge({
    name: 'quicgate_fleet_address_reserve',
    help: 'Address pairs this gateway holds claimed for a Redis outage (fleet.address_reserve).',
    registers,
    collect() {
      this.set(fleet.status.addresses.reserveSize);
    },
  });
  new Counter({
    name: 'quicgate_fleet_auth_unanswered_total',
    help: "Auth attempts the fleet's shared budget could not answer for (Redis down or slow); the local throttle decided them.",
    registers,
    collect() {
      this.reset();
      this.inc(fleet.status.attemptsUnanswered);
    },
  });
  const rounds = new Histogram({
    name: 'quicgate_fleet_lease_round_seconds',
    help: 'Duration of rate lease rounds (one Redis round trip for all users), by outcome.',
    labelNames: ['outcome'],
    buckets: ROUND_BUCKETS,
    registers,
  });
  return fleet.onRound((seconds, ok) => rounds.observe({ outcome: ok ? 'ok' : 'failed' }, seconds));
}
