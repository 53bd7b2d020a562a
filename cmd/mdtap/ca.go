package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/mdtap/mdtap/proxy"
)

func newCACmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Manage the sidecar's MITM certificate authority",
		Long: `The sidecar intercepts a client's HTTPS calls with certificates it mints from
its own CA. Client services must trust that CA's certificate (ca.crt); its key
(ca.key) never leaves the sidecar. Give each environment its own CA.`,
	}
	var dir string
	var force bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the MITM CA: DIR/ca.crt and DIR/ca.key (mode 0600)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usagef("--dir is required")
			}
			if err := proxy.InitCA(dir, force); err != nil {
				if errors.Is(err, proxy.ErrExists) {
					return &exitError{code: exitFailure, err: err}
				}
				return err
			}
			fmt.Fprintf(a.stdout, "%s\n", filepath.Join(dir, proxy.CACertFile))
			fmt.Fprintf(a.stderr, "created the MITM CA in %s; give client services ca.crt to trust, keep ca.key private\n", dir)
			return nil
		},
	}
	initCmd.Flags().StringVar(&dir, "dir", "", "CA `dir`")
	initCmd.Flags().BoolVar(&force, "force", false, "replace an existing CA (clients must then trust the new ca.crt)")
	cmd.AddCommand(initCmd)
	return cmd
}
