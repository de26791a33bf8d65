package main

import (
	"context"
	"fmt"

	"github.com/callstream/callstream/pkg/config"
)

func cmdConfig(_ context.Context, e *env, args []string) error {
	if len(args) == 0 || (args[0] != "validate" && args[0] != "print") {
		return fmt.Errorf("%w: want `config validate` or `config print`", errUsage)
	}
	cfg, _, err := loadConfig(e, "config "+args[0], args[1:], nil)
	if err != nil {
		return err
	}
	if args[0] == "validate" {
		fmt.Fprintln(e.stdout, "configuration is valid")
		return nil
	}
	out, err := config.Print(cfg)
	if err != nil {
		return err
	}
	fmt.Fprint(e.stdout, out)
	return nil
}
