package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newCheckCmd is a placeholder until the check subcommand lands.
func newCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check",
		Short: "(not yet implemented)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("check: not yet implemented") },
	}
}
