/**
 * A maintenance window's recurrence, as admins write it, and the Temporal Schedule spec it
 * becomes. Pre-approved windows fire `leadSeconds` before the window starts (the plan is made
 * then), so their spec is the recurrence shifted back by the lead.
 */
import type { CalendarSpec, ScheduleSpec } from '@temporalio/client';
import { z } from 'zod';

export const DAYS = ['SUNDAY', 'MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY'] as const;
export const MONTH_NAMES = [
  'JANUARY',
  'FEBRUARY',
  'MARCH',
  'APRIL',
  'MAY',
  'JUNE',
  'JULY',
  'AUGUST',
  'SEPTEMBER',
  'OCTOBER',
  'NOVEMBER',
  'DECEMBER',
] as const;

const DayRange = z
  .object({ start: z.number().int().min(1).max(31), end: z.number().int().min(1).max(31) })
  .refine((r) => r.start <= r.end, 'start must not be after end');

/** Calendar fields; all given fields must match. "Second Tuesday" = TUESDAY with dayOfMonth 8–14. */
export const CalendarRecurrence = z
  .object({
    hour: z.number().int().min(0).max(23),
    minute: z.number().int().min(0).max(59),
    dayOfWeek: z.array(z.enum(DAYS)).min(1).max(7).optional(),
    dayOfMonth: DayRange.optional(),
    month: z.array(z.enum(MONTH_NAMES)).min(1).max(12).optional(),
  })
  .strict();
export type CalendarRecurrence = z.infer<typeof CalendarRecurrence>;

// Five cron fields (minute hour day-of-month month day-of-week) or a @-macro; Temporal parses it.
const CRON = /^(@(yearly|annually|monthly|weekly|daily|hourly))$|^([0-9A-Za-z*,/?-]+\s+){4}[0-9A-Za-z*,/?#L-]+$/;

export const Recurrence = z.union([
  z
    .object({
      cron: z.string().max(200).trim().regex(CRON, 'not a 5-field cron expression (minute hour day month weekday)'),
    })
    .strict(),
  z.object({ calendar: CalendarRecurrence }).strict(),
  /** Every N seconds, aligned to the epoch; meant for frequent windows and for tests. */
  z
    .object({
      everySeconds: z
        .number()
        .int()
        .min(1)
        .max(366 * 86400),
    })
    .strict(),
]);
export type Recurrence = z.infer<typeof Recurrence>;

export function isTimezone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: tz });
    return tz.length > 0;
  } catch {
    return false;
  }
}

/** Thrown when a recurrence cannot be shifted by the lead time; mapped to 400 on `leadSeconds`. */
export class LeadShiftError extends Error {}

/** A calendar recurrence with the second it fires at (a lead need not be whole minutes). */
export type CalendarFiring = CalendarRecurrence & { second: number };

/** When a calendar window's Schedule fires: its start shifted back by `lead` seconds (wall clock). */
export function calendarFiring(cal: CalendarRecurrence, lead: number): CalendarFiring {
  let seconds = cal.hour * 3600 + cal.minute * 60 - lead;
  let daysBack = 0;
  while (seconds < 0) {
    seconds += 86400;
    daysBack++;
  }
  if (daysBack >= 7)
    throw new LeadShiftError('a lead time of 7 days or more cannot be expressed on a calendar recurrence');
  const firing: CalendarFiring = {
    hour: Math.floor(seconds / 3600),
    minute: Math.floor((seconds % 3600) / 60),
    second: seconds % 60,
  };
  if (cal.dayOfWeek) firing.dayOfWeek = cal.dayOfWeek.map((d) => DAYS[(DAYS.indexOf(d) - daysBack + 7) % 7]);
  if (cal.dayOfMonth) {
    if (cal.dayOfMonth.start - daysBack < 1)
      throw new LeadShiftError(
        'the lead time moves the planning day into the previous month; use a shorter lead or a later day of month',
      );
    firing.dayOfMonth = { start: cal.dayOfMonth.start - daysBack, end: cal.dayOfMonth.end - daysBack };
  } else if (cal.month && daysBack > 0) {
    throw new LeadShiftError(
      'with a month restriction and no day of month, the lead time could cross into another month',
    );
  }
  if (cal.month) firing.month = cal.month;
  return firing;
}

/** The Temporal calendar spec of a calendar window shifted back by `lead` seconds. */
export function shiftCalendar(cal: CalendarRecurrence, lead: number): CalendarSpec {
  const f = calendarFiring(cal, lead);
  const spec: CalendarSpec = { hour: f.hour, minute: f.minute, second: f.second };
  if (f.dayOfWeek) spec.dayOfWeek = f.dayOfWeek;
  if (f.dayOfMonth) spec.dayOfMonth = f.dayOfMonth;
  if (f.month) spec.month = f.month;
  return spec;
}

export interface SpecInput {
  recurrence: Recurrence;
  timezone: string;
  leadSeconds: number;
  startAt?: Date | null;
  endAt?: Date | null;
}

/** The Schedule spec for a window: fires at window start, or `leadSeconds` before it. */
export function scheduleSpec(w: SpecInput): ScheduleSpec {
  const lead = w.leadSeconds;
  const spec: ScheduleSpec = { timezone: w.timezone };
  const r = w.recurrence;
  if ('cron' in r) {
    if (lead > 0)
      throw new LeadShiftError(
        'a lead time needs a calendar or everySeconds recurrence (a cron expression cannot be shifted reliably)',
      );
    spec.cronExpressions = [r.cron];
  } else if ('calendar' in r) {
    spec.calendars = [shiftCalendar(r.calendar, lead)];
  } else {
    if (lead >= r.everySeconds) throw new LeadShiftError('the lead time must be shorter than the interval');
    spec.intervals = [
      { every: r.everySeconds * 1000, offset: ((r.everySeconds - (lead % r.everySeconds)) % r.everySeconds) * 1000 },
    ];
  }
  if (w.startAt) spec.startAt = new Date(w.startAt.getTime() - lead * 1000);
  if (w.endAt) spec.endAt = new Date(w.endAt.getTime() - lead * 1000);
  return spec;
}

/** A readable description for the Temporal UI's schedule note. */
export function describeRecurrence(r: Recurrence, timezone: string): string {
  if ('cron' in r) return `cron "${r.cron}" ${timezone}`;
  if ('everySeconds' in r) return `every ${r.everySeconds}s`;
  const c = r.calendar;
  const time = `${String(c.hour).padStart(2, '0')}:${String(c.minute).padStart(2, '0')}`;
  const days = c.dayOfWeek ? ` on ${c.dayOfWeek.join(',')}` : '';
  const dom = c.dayOfMonth ? ` day ${c.dayOfMonth.start}-${c.dayOfMonth.end}` : '';
  const months = c.month ? ` in ${c.month.join(',')}` : '';
  return `${time} ${timezone}${days}${dom}${months}`;
}

/** One formatter per zone: building one costs far more than using it, and a year's scan uses ~1,100. */
const zoneFormats = new Map<string, Intl.DateTimeFormat>();

/** UTC offset (ms) of a zone at an instant, from Intl (no tz database of our own). */
function zoneOffset(timezone: string, at: number): number {
  let format = zoneFormats.get(timezone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    zoneFormats.set(timezone, format);
  }
  const parts = format.formatToParts(new Date(at));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  return (
    Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second')) -
    Math.floor(at / 1000) * 1000
  );
}

/**
 * Days in the coming year on which a calendar window's start time does not exist locally (a DST
 * gap): Temporal skips those firings, so admins are warned instead of silently losing a window.
 */
export function dstGapDays(cal: CalendarRecurrence, timezone: string, from = Date.now(), days = 366): string[] {
  const gaps: string[] = [];
  const start = new Date(from);
  for (let i = 0; i < days; i++) {
    const day = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), start.getUTCDate() + i));
    if (cal.dayOfWeek && !cal.dayOfWeek.includes(DAYS[day.getUTCDay()])) continue;
    if (cal.month && !cal.month.includes(MONTH_NAMES[day.getUTCMonth()])) continue;
    if (cal.dayOfMonth && (day.getUTCDate() < cal.dayOfMonth.start || day.getUTCDate() > cal.dayOfMonth.end)) continue;
    const wall = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), cal.hour, cal.minute);
    // The wall time exists when, for the offset before or after it, the instant (wall − offset)
    // really has that offset.
    const offsets = [zoneOffset(timezone, wall - 86400_000), zoneOffset(timezone, wall + 86400_000)];
    if (!offsets.some((off) => zoneOffset(timezone, wall - off) === off)) gaps.push(day.toISOString().slice(0, 10));
  }
  return gaps;
}
