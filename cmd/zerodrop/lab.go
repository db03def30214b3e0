package main

import (
	"errors"

	"github.com/spf13/cobra"
)

// newLabCmd is a placeholder until the lab subcommand lands.
func newLabCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lab",
		Short: "(not yet implemented)",
		RunE:  func(*cobra.Command, []string) error { return errors.New("lab: not yet implemented") },
	}
}
