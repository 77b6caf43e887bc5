import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { dstGapDays, LeadShiftError, scheduleSpec, shiftCalendar } from '../../api/windows/schedule-spec';

describe('a pre-approved window fires its lead time before the window starts', () => {
  it('Sunday 02:00 with a 24 h lead plans on Saturday 02:00', () => {
    assert.deepEqual(shiftCalendar({ hour: 2, minute: 0, dayOfWeek: ['SUNDAY'] }, 86400), {
      hour: 2,
      minute: 0,
      second: 0,
      dayOfWeek: ['SATURDAY'],
    });
  });

  it('the second Tuesday 01:30 with a 2 h lead plans on the Monday before, days 7–13', () => {
    assert.deepEqual(
      shiftCalendar({ hour: 1, minute: 30, dayOfWeek: ['TUESDAY'], dayOfMonth: { start: 8, end: 14 } }, 7200),
      {
        hour: 23,
        minute: 30,
        second: 0,
        dayOfWeek: ['MONDAY'],
        dayOfMonth: { start: 7, end: 13 },
      },
    );
  });

  it('a lead that would move the plan into the previous month is refused, not silently wrong', () => {
    assert.throws(() => shiftCalendar({ hour: 3, minute: 0, dayOfMonth: { start: 1, end: 1 } }, 86400), LeadShiftError);
    assert.throws(() => shiftCalendar({ hour: 3, minute: 0, month: ['JANUARY'] }, 4 * 3600), LeadShiftError);
  });

  it('an interval window keeps its alignment: the firing moves back by the lead', () => {
    const spec = scheduleSpec({ recurrence: { everySeconds: 3600 }, timezone: 'UTC', leadSeconds: 600 });
    assert.deepEqual(spec.intervals, [{ every: 3_600_000, offset: 3_000_000 }]);
    assert.throws(
      () => scheduleSpec({ recurrence: { everySeconds: 60 }, timezone: 'UTC', leadSeconds: 60 }),
      LeadShiftError,
    );
  });

  it('a cron recurrence has no lead (it cannot be shifted reliably) and is passed through otherwise', () => {
    assert.deepEqual(
      scheduleSpec({ recurrence: { cron: '0 2 * * 0' }, timezone: 'Europe/Berlin', leadSeconds: 0 }).cronExpressions,
      ['0 2 * * 0'],
    );
    assert.throws(
      () => scheduleSpec({ recurrence: { cron: '0 2 * * 0' }, timezone: 'Europe/Berlin', leadSeconds: 60 }),
      LeadShiftError,
    );
  });
});

describe('a window start that falls into a DST gap is found, so the admin can be warned', () => {
  const from = Date.parse('2027-01-01T00:00:00Z');
  it('02:30 daily in Europe/Berlin does not exist on 28 March 2027', () => {
    assert.deepEqual(dstGapDays({ hour: 2, minute: 30 }, 'Europe/Berlin', from), ['2027-03-28']);
  });
  it('02:30 on Sundays in America/New_York does not exist on 14 March 2027', () => {
    assert.deepEqual(dstGapDays({ hour: 2, minute: 30, dayOfWeek: ['SUNDAY'] }, 'America/New_York', from), [
      '2027-03-14',
    ]);
  });
  it('03:30 in Europe/Berlin, 02:30 on Mondays, and any time in UTC are always there', () => {
    assert.deepEqual(dstGapDays({ hour: 3, minute: 30 }, 'Europe/Berlin', from), []);
    assert.deepEqual(dstGapDays({ hour: 2, minute: 30, dayOfWeek: ['MONDAY'] }, 'Europe/Berlin', from), []);
    assert.deepEqual(dstGapDays({ hour: 2, minute: 30 }, 'UTC', from), []);
  });
});
