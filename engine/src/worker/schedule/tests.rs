//! Unit tests of the schedule: the first moment after quiet hours.
use super::*;
use chrono::NaiveTime;

fn parse_hm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s, "%H:%M").ok()
}

fn q(from: &str, to: &str) -> QuietHours {
    QuietHours {
        from: parse_hm(from).unwrap(),
        to: parse_hm(to).unwrap(),
        tz: TimeZone::Fixed(chrono_tz::UTC),
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn quiet_hours_across_midnight() {
    let night = q("21:00", "08:00");
    let tz = chrono_tz::UTC;
    assert_eq!(
        after_quiet_hours(at("2026-11-24T12:00:00Z"), &night, tz),
        at("2026-11-24T12:00:00Z")
    );
    assert_eq!(
        after_quiet_hours(at("2026-11-24T22:30:00Z"), &night, tz),
        at("2026-11-25T08:00:00Z")
    );
    assert_eq!(
        after_quiet_hours(at("2026-11-25T03:00:00Z"), &night, tz),
        at("2026-11-25T08:00:00Z")
    );
    assert_eq!(
        after_quiet_hours(at("2026-11-25T08:00:00Z"), &night, tz),
        at("2026-11-25T08:00:00Z")
    );
}

#[test]
fn quiet_hours_within_a_day_and_in_a_zone() {
    let lunch = q("12:00", "13:30");
    assert_eq!(
        after_quiet_hours(at("2026-11-24T12:10:00Z"), &lunch, chrono_tz::UTC),
        at("2026-11-24T13:30:00Z")
    );
    // 22:30 UTC is 23:30 in Paris (winter): quiet until 08:00 Paris = 07:00 UTC.
    let night = q("21:00", "08:00");
    assert_eq!(
        after_quiet_hours(at("2026-11-24T22:30:00Z"), &night, chrono_tz::Europe::Paris),
        at("2026-11-25T07:00:00Z")
    );
}
