package check

import (
	"os"
	"strings"
	"testing"
)

func TestChecksMarkdownUpToDate(t *testing.T) {
	got, err := os.ReadFile("../../docs/checks.md")
	if err != nil {
		t.Fatalf("%v (generate it: go run ./hack/gendocs)", err)
	}
	if string(got) != RulesMarkdown() {
		t.Fatal("docs/checks.md is stale: run `go run ./hack/gendocs` (or `make docs`) and commit it")
	}
}

func TestRulesCatalogue(t *testing.T) {
	seen := map[string]bool{}
	for i, r := range Rules() {
		if seen[r.ID] {
			t.Errorf("duplicate id %s", r.ID)
		}
		seen[r.ID] = true
		if i > 0 && Rules()[i-1].ID >= r.ID {
			t.Errorf("not ordered: %s after %s", r.ID, Rules()[i-1].ID)
		}
		if r.Title == "" || r.Rationale == "" || r.Fix == "" || len(r.ID) != 5 || !strings.HasPrefix(r.ID, "ZD") {
			t.Errorf("incomplete rule %+v", r)
		}
		if strings.Contains(r.Formula, "`") {
			t.Errorf("%s: the formula is rendered in a code span, a backtick breaks it", r.ID)
		}
		if !strings.Contains(RulesMarkdown(), "### "+r.ID) {
			t.Errorf("%s missing from the markdown", r.ID)
		}
	}
	// Every id constant used by the checks is in the catalogue.
	for _, id := range []string{RuleBadAnnotation, RuleNoReadinessProbe, RuleSameProbes, RuleStartupGap, RuleRollingUpdate, RuleHPAFasterThanGates,
		RuleSIGKILL, RuleGraceBuffer, RuleEarlyExit, RuleShellSleep, RuleInFlightCut, RuleLongLived, RuleGKEDrain,
		RuleDeregistrationShort, RuleDeregistrationDefault, RuleGateCannotWork, RuleGateNotInjected, RuleWebhookFail, RuleHAProxyNoCheck,
		RuleZerodropGateNotInjected, RuleGateTimeoutShort, RuleDrainOutlivesGrace, RuleBindingDangling, RuleEventRing, RuleIdleClose,
		RuleNoPDB, RulePDBBlocks} {
		if !seen[id] {
			t.Errorf("%s has no catalogue entry", id)
		}
	}
}
