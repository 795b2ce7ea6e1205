package erpsync

// ConfigError is a configuration value a constructor (soap.New, flow.New, auth.NewPasswordAuth,
// ...) refused. Its message names the value in words ("tenant base URL"), never a Go type or
// field, so that it may reach an operator as it is; a program that has names of its own for
// its settings maps Field to them (the worker prints the environment variable).
type ConfigError struct {
	// Field is the refused field as "package.Type.Field", e.g. "soap.Config.BaseURL". It is a
	// key for programs and never part of the message.
	Field string
	// What names the value in words, e.g. "tenant base URL".
	What string
	// Problem says what is wrong and what would be valid, to follow What or a setting's
	// name, e.g. "is required, such as https://sod.superoffice.com/Cust12345".
	Problem string
	// Err is the underlying cause, if any; its message follows Problem.
	Err error
}

func (e *ConfigError) Error() string { return e.Describe(e.What) }

// Describe is the message with name (a setting's name, say) in place of What.
func (e *ConfigError) Describe(name string) string {
	s := name + " " + e.Problem
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *ConfigError) Unwrap() error { return e.Err }
