/** The admin API's shapes, as the gateway defines them (type-only: nothing of the server is bundled). */
export type {
  HourlyView,
  OverviewView,
  PastSessionsView,
  SessionView,
  StatsView,
  UserUpdateResult,
} from '../../src/admin/backend.js';

export type UserSummary = import('../../src/admin/backend.js').OverviewView['users'][number];
export type PastSession = import('../../src/admin/backend.js').PastSessionsView['sessions'][number];

export interface ConsoleSessionInfo {
  readonly csrfToken: string;
  readonly expiresAt: string;
}
