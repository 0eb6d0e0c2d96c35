// Command report is the cron pattern: every minute, one run writes a
// summary of a directory to its log. The function is package
// examples/annotated/report's, which declares the same cron job with a
// //kiln: annotation instead.
package main

import (
	"github.com/kiln-dev/kiln/examples/annotated/report"
	"github.com/kiln-dev/kiln/sdk"
	"github.com/kiln-dev/kiln/spec"
)

func main() {
	sdk.RunJob(spec.Service{
		Name: "report",
		Cron: &spec.Cron{Schedule: "@every 1m", ConcurrencyPolicy: spec.ConcurrencyForbid},
	}, report.Summarize)
}
