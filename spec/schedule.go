package spec

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ParseSchedule parses a cron schedule the way every target reads it
// (Kubernetes parses CronJob schedules with the same library and rules):
// 5 fields, or a descriptor such as @daily or "@every 1m", read in loc.
func ParseSchedule(schedule string, loc *time.Location) (cron.Schedule, error) {
	if err := ValidSchedule(schedule); err != nil {
		return nil, err
	}
	if loc != nil {
		// robfig/cron reads a zone from a CRON_TZ= prefix only.
		schedule = "CRON_TZ=" + loc.String() + " " + schedule
	}
	return cron.ParseStandard(schedule)
}

// ValidSchedule reports why schedule is not one kiln runs, or nil.
func ValidSchedule(schedule string) error {
	if strings.TrimSpace(schedule) == "" {
		return fmt.Errorf("must be set: 5 fields like \"*/5 * * * *\" or a descriptor like \"@daily\" or \"@every 1m\"")
	}
	if strings.HasPrefix(schedule, "TZ=") || strings.HasPrefix(schedule, "CRON_TZ=") {
		// Kubernetes refuses a zone inside the schedule.
		return fmt.Errorf("%q names its time zone in the schedule; set time_zone instead", schedule)
	}
	if _, err := cron.ParseStandard(schedule); err != nil {
		return fmt.Errorf("%q is not a cron schedule (5 fields like \"*/5 * * * *\", or @yearly, @monthly, @weekly, @daily, @hourly, \"@every 1m\"): %w", schedule, err)
	}
	return nil
}
