package spec

import (
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/golden"
)

func TestBatchFieldsAreValidatedOnePathEach(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  Service
		want string // "" when valid
	}{
		{"job with defaults", Service{Name: "migrate", Job: &Job{}}, ""},
		{"job of 5 by 2", Service{Name: "migrate", Job: &Job{Completions: 5, Parallelism: 2, Retries: 3, Deadline: Duration(time.Minute)}}, ""},
		{"negative completions", Service{Name: "migrate", Job: &Job{Completions: -1}},
			`services[migrate].job.completions: must be ≥ 1, got -1`},
		{"negative retries", Service{Name: "migrate", Job: &Job{Retries: -2}},
			`services[migrate].job.retries: must be ≥ 0, got -2`},
		{"negative deadline", Service{Name: "migrate", Job: &Job{Deadline: Duration(-time.Second)}},
			`services[migrate].job.deadline: must be ≥ 0 (0 means none), got -1s`},
		{"cron every minute", Service{Name: "report", Cron: &Cron{Schedule: "@every 1m", TimeZone: "Europe/Paris"}}, ""},
		{"cron of 5 fields", Service{Name: "report", Cron: &Cron{Schedule: "*/5 * * * 1-5", ConcurrencyPolicy: ConcurrencyForbid}}, ""},
		{"cron daily", Service{Name: "report", Cron: &Cron{Schedule: "@daily", ConcurrencyPolicy: ConcurrencyReplace, StartingDeadline: Duration(time.Minute)}}, ""},
		{"schedule of 4 fields", Service{Name: "report", Cron: &Cron{Schedule: "* * * *"}},
			`services[report].cron.schedule: "* * * *" is not a cron schedule (5 fields like "*/5 * * * *", or @yearly, @monthly, @weekly, @daily, @hourly, "@every 1m"): expected exactly 5 fields, found 4: [* * * *]`},
		{"schedule out of range", Service{Name: "report", Cron: &Cron{Schedule: "61 * * * *"}},
			`services[report].cron.schedule: "61 * * * *" is not a cron schedule (5 fields like "*/5 * * * *", or @yearly, @monthly, @weekly, @daily, @hourly, "@every 1m"): end of range (61) above maximum (59): 61`},
		{"no schedule", Service{Name: "report", Cron: &Cron{}},
			`services[report].cron.schedule: must be set: 5 fields like "*/5 * * * *" or a descriptor like "@daily" or "@every 1m"`},
		{"zone in the schedule", Service{Name: "report", Cron: &Cron{Schedule: "CRON_TZ=UTC @daily"}},
			`services[report].cron.schedule: "CRON_TZ=UTC @daily" names its time zone in the schedule; set time_zone instead`},
		{"unknown zone", Service{Name: "report", Cron: &Cron{Schedule: "@daily", TimeZone: "Mars/Olympus"}},
			`services[report].cron.time_zone: "Mars/Olympus" is not an IANA time zone like "Europe/Paris" or "UTC"`},
		{"unknown policy", Service{Name: "report", Cron: &Cron{Schedule: "@daily", ConcurrencyPolicy: "queue"}},
			`services[report].cron.concurrency_policy: must be one of "allow", "forbid", "replace", got "queue"`},
		{"template parallelism", Service{Name: "report", Cron: &Cron{Schedule: "@daily", Job: Job{Parallelism: -1}}},
			`services[report].cron.job.parallelism: must be ≥ 1, got -1`},
		{"public job", Service{Name: "migrate", Public: true, Job: &Job{}},
			`services[migrate].public: a job service serves no requests; remove it`},
		{"cron with a sidecar", Service{Name: "report", Cron: &Cron{Schedule: "@daily"}, Sidecars: []Container{{Name: "x", Image: "x"}}},
			`services[report].sidecars: a sidecar would keep each run of a cron service from completing; use init containers`},
		{"job and cron", Service{Name: "both", Job: &Job{}, Cron: &Cron{Schedule: "@daily"}},
			`services[both]: sets job and cron; a service follows exactly one pattern`},
	} {
		t.Run(tc.name, func(t *testing.T) { checkValidate(t, tc.svc, tc.want) })
	}
}

func TestBatchStableJSON(t *testing.T) {
	app := &App{Name: "ops", Services: []Service{
		{Name: "migrate", Job: &Job{Completions: 5, Parallelism: 2, Retries: 3, Deadline: Duration(10 * time.Minute)}},
		{Name: "report", Env: map[string]string{"OUT": "-"}, Cron: &Cron{Schedule: "@every 1m", TimeZone: "Europe/Paris", ConcurrencyPolicy: ConcurrencyForbid, StartingDeadline: Duration(30 * time.Second), Job: Job{Retries: 1}}},
	}}
	app.SetDefaults()
	if err := app.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := app.MarshalStable()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "batch.json", got)
	back, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := back.MarshalStable(); string(again) != string(got) {
		t.Fatalf("JSON does not round-trip:\n%s\n%s", got, again)
	}
}

func TestParseScheduleReadsItsZone(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Skip(err)
	}
	s, err := ParseSchedule("0 9 * * *", paris)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	if got, want := s.Next(from), time.Date(2026, 1, 10, 8, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Next(%s) = %s, want %s (09:00 in Paris)", from, got.UTC(), want)
	}
}
