package schemas

import "time"

// parseTime parses an RFC 3339 date-time as time.Time's JSON decoding does,
// with the same result, but refuses what that lets through beyond RFC 3339
// (it falls back to time.Parse, which takes a one-digit hour, a comma before
// the fraction, offsets such as +24:00): the schema's date-time format
// refuses those, and DecodeCall must not accept what the schema refuses.
//
// The producer writes time.RFC3339Nano in UTC, which this reads without
// time.Parse; other offsets go through time.Parse, so that the location is
// exactly what time.Time's decoding gives (Local when the offset is the
// local one, else a fixed zone).
func parseTime(s string) (time.Time, bool) {
	if len(s) < len("2006-01-02T15:04:05Z") {
		return time.Time{}, false
	}
	year, ok1 := digits4(s[0:4])
	month, ok2 := digits2(s[5:7])
	day, ok3 := digits2(s[8:10])
	hour, ok4 := digits2(s[11:13])
	minute, ok5 := digits2(s[14:16])
	sec, ok6 := digits2(s[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	rest := s[19:]
	nsec := 0
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
			if n <= 9 { // time keeps nanoseconds and drops further digits
				nsec = nsec*10 + int(rest[n]-'0')
			}
			n++
		}
		if n == 1 {
			return time.Time{}, false
		}
		for k := n; k <= 9; k++ {
			nsec *= 10
		}
		rest = rest[n:]
	}
	switch {
	case rest == "Z":
		// time.Date(..., time.UTC) without its normalising: the same Time.
		unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
		return time.Unix(unix, int64(nsec)).UTC(), true
	case len(rest) == len("+07:00") && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		zh, ok1 := digits2(rest[1:3])
		zm, ok2 := digits2(rest[4:6])
		if !ok1 || !ok2 || zh > 23 || zm > 59 {
			return time.Time{}, false
		}
		t, err := time.Parse(time.RFC3339, s)
		return t, err == nil
	}
	return time.Time{}, false
}

func digits2(s string) (int, bool) {
	a, b := s[0]-'0', s[1]-'0'
	return int(a)*10 + int(b), a <= 9 && b <= 9
}

func digits4(s string) (int, bool) {
	hi, ok1 := digits2(s[0:2])
	lo, ok2 := digits2(s[2:4])
	return hi*100 + lo, ok1 && ok2
}

// daysIn returns the number of days in a month of the proleptic Gregorian
// calendar.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysSinceEpoch returns the days from 1970-01-01 to a valid date of the
// proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
func daysSinceEpoch(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y-- // count the year from March, so that a leap day ends it
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400                     // [0, 399]
	mp := int64((month + 9) % 12)          // March is 0
	doy := (153*mp+2)/5 + int64(day) - 1   // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return era*146097 + doe - 719468
}
