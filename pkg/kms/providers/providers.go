// Package providers builds the kms.Client of a Keyward process: every KMS
// provider this build has, each configured from flags and environment the
// way its cloud's own tools are (the AWS default credential chain, the OCI
// config file or instance/resource principals, Azure's default credential
// chain), registered explicitly — never through init().
package providers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/oracle/oci-go-sdk/v65/common"
	"go.opentelemetry.io/otel/metric"

	"github.com/keyward/keyward/pkg/breaker"
	"github.com/keyward/keyward/pkg/kms"
	"github.com/keyward/keyward/pkg/kms/awskms"
	"github.com/keyward/keyward/pkg/kms/azurekv"
	"github.com/keyward/keyward/pkg/kms/localkms"
	"github.com/keyward/keyward/pkg/kms/ocikms"
	"github.com/keyward/keyward/pkg/platform"
	"github.com/keyward/keyward/pkg/svc"
)

// OCI authentication modes.
const (
	OCIAuthNone              = "none"
	OCIAuthConfigFile        = "config_file"
	OCIAuthInstancePrincipal = "instance_principal"
	OCIAuthResourcePrincipal = "resource_principal"
)

// Azure authentication modes.
const (
	AzureAuthNone             = "none"
	AzureAuthDefault          = "default"
	AzureAuthClientSecret     = "client_secret"
	AzureAuthManagedIdentity  = "managed_identity"
	AzureAuthWorkloadIdentity = "workload_identity"
)

// Config is how a process reaches the KMSs.
type Config struct {
	LocalKMSDir string
	CallTimeout time.Duration

	AWSAssumeRoleARN string
	AWSExternalID    string

	OCIAuth       string
	OCIConfigFile string
	OCIProfile    string

	AzureAuth string

	// Breaker puts a circuit breaker per KMS endpoint (pkg/breaker) in
	// front of every call. Workers that use keys in live traffic turn it on
	// (RegisterBreaker defaults it to true); the key-health-monitor does
	// not, since its probes are what see an endpoint come back.
	Breaker bool
	// BreakerSettings tune the breakers; zero fields take the defaults.
	BreakerSettings breaker.Settings
	// OnBreakerChange, when set, is told every breaker state change (the
	// service publishes it as BreakerStateChanged). Not a flag.
	OnBreakerChange func(breaker.Change)
}

// Register defines the flags (with environment fallbacks) on f.
func (c *Config) Register(f *svc.Flags) {
	f.String(&c.LocalKMSDir, "localkms-dir", "KEYWARD_LOCALKMS_DIR", "", "base directory of relative localkms:// key paths")
	f.Duration(&c.CallTimeout, "kms-timeout", "KEYWARD_KMS_TIMEOUT", kms.DefaultCallTimeout, "bound of one KMS call")
	f.String(&c.AWSAssumeRoleARN, "aws-assume-role", "KEYWARD_AWS_ASSUME_ROLE_ARN", "", "IAM role assumed (on top of the default AWS credential chain) for every KMS call")
	f.String(&c.AWSExternalID, "aws-external-id", "KEYWARD_AWS_EXTERNAL_ID", "", "external id of the assumed role")
	f.String(&c.OCIAuth, "oci-auth", "KEYWARD_OCI_AUTH", OCIAuthConfigFile, "OCI authentication: config_file, instance_principal, resource_principal or none")
	f.String(&c.OCIConfigFile, "oci-config-file", "OCI_CONFIG_FILE", "", "OCI config file (default ~/.oci/config)")
	f.String(&c.OCIProfile, "oci-profile", "OCI_CLI_PROFILE", "DEFAULT", "profile in the OCI config file")
	f.String(&c.AzureAuth, "azure-auth", "KEYWARD_AZURE_AUTH", AzureAuthDefault, "Azure authentication: default (environment, workload identity, managed identity, CLI), client_secret, managed_identity, workload_identity or none")
}

// RegisterBreaker defines the circuit breaker flags (with environment
// fallbacks) on f; workers that call KMSs in live traffic register them.
func (c *Config) RegisterBreaker(f *svc.Flags) {
	d := breaker.DefaultSettings()
	f.Bool(&c.Breaker, "kms-breaker", "KEYWARD_KMS_BREAKER", true, "a circuit breaker per KMS endpoint (false turns them off)")
	f.Int(&c.BreakerSettings.ConsecutiveFailures, "kms-breaker-failures", "KEYWARD_KMS_BREAKER_FAILURES", d.ConsecutiveFailures, "endpoint failures in a row that open an endpoint's breaker")
	f.Int(&c.BreakerSettings.MinRequests, "kms-breaker-min-requests", "KEYWARD_KMS_BREAKER_MIN_REQUESTS", d.MinRequests, "calls in the window before the failure ratio (50%) can open the breaker")
	f.Duration(&c.BreakerSettings.Window, "kms-breaker-window", "KEYWARD_KMS_BREAKER_WINDOW", d.Window, "rolling window of the failure ratio")
	f.Duration(&c.BreakerSettings.OpenTimeout, "kms-breaker-open", "KEYWARD_KMS_BREAKER_OPEN", d.OpenTimeout, "how long an open breaker refuses calls before trial calls")
	f.Int(&c.BreakerSettings.HalfOpenRequests, "kms-breaker-trials", "KEYWARD_KMS_BREAKER_TRIALS", d.HalfOpenRequests, "trial calls of a half-open breaker (that many successes close it)")
}

// NewClient builds a kms.Client with localkms and the three cloud providers.
// A cloud whose authentication is "none" is not registered: its keys fail
// as unsupported (and the encryptor treats them as unavailable).
func NewClient(ctx context.Context, c Config, plat platform.Config, mp metric.MeterProvider, extra ...kms.ClientOption) (*kms.Client, error) {
	opts := []kms.ClientOption{
		kms.WithProvider(kms.SchemeLocal, localkms.New(localkms.WithBaseDir(c.LocalKMSDir))),
		kms.WithCallTimeout(c.CallTimeout),
	}
	if mp != nil {
		opts = append(opts, kms.WithMeterProvider(mp))
	}
	var errs []error

	awsOpts := []awskms.Option{}
	if c.AWSAssumeRoleARN != "" || plat.AWS.AssumeRoleARN != "" {
		role := c.AWSAssumeRoleARN
		if role == "" {
			role = plat.AWS.AssumeRoleARN
		}
		awsOpts = append(awsOpts, awskms.WithAssumeRole(role, c.AWSExternalID))
	}
	if p, err := awskms.New(ctx, awsOpts...); err != nil {
		errs = append(errs, fmt.Errorf("AWS KMS provider: %w", err))
	} else {
		opts = append(opts, kms.WithProvider(kms.SchemeAWS, p))
	}

	switch c.OCIAuth {
	case OCIAuthNone, "":
	default:
		var auth ocikms.Option
		switch c.OCIAuth {
		case OCIAuthInstancePrincipal:
			auth = ocikms.WithInstancePrincipal()
		case OCIAuthResourcePrincipal:
			auth = ocikms.WithResourcePrincipal()
		case OCIAuthConfigFile:
			path := c.OCIConfigFile
			if path == "" {
				home, _ := os.UserHomeDir()
				path = filepath.Join(home, ".oci", "config")
			}
			if _, err := os.Stat(path); err != nil {
				// No OCI configuration on this machine: OCI keys are
				// unsupported here, which is what most dev machines want.
				break
			}
			profile := c.OCIProfile
			if profile == "" {
				profile = "DEFAULT"
			}
			cp, err := common.ConfigurationProviderFromFileWithProfile(path, profile, "")
			if err != nil {
				errs = append(errs, fmt.Errorf("OCI config file %s: %w", path, err))
				break
			}
			// The SDK reads the file lazily: check the profile now, so a
			// broken one fails the start, not the first tenant's asset.
			if ok, err := common.IsConfigurationProviderValid(cp); !ok {
				errs = append(errs, fmt.Errorf("OCI config file %s, profile %s: %w (set OCI_CONFIG_FILE and OCI_CLI_PROFILE, or KEYWARD_OCI_AUTH)", path, profile, err))
				break
			}
			auth = ocikms.WithConfigurationProvider(cp)
		default:
			errs = append(errs, fmt.Errorf("KEYWARD_OCI_AUTH=%q: want config_file, instance_principal, resource_principal or none", c.OCIAuth))
		}
		if auth != nil {
			p, err := ocikms.New(auth, ocikms.WithAllowedRegions(plat.OCI.AllowedRegions))
			if err != nil {
				errs = append(errs, fmt.Errorf("OCI Vault provider: %w", err))
			} else {
				opts = append(opts, kms.WithProvider(kms.SchemeOCI, p))
			}
		}
	}

	switch c.AzureAuth {
	case AzureAuthNone, "":
	default:
		var auth azurekv.Option
		switch c.AzureAuth {
		case AzureAuthDefault:
			cred, err := azidentity.NewDefaultAzureCredential(nil)
			if err != nil {
				errs = append(errs, fmt.Errorf("Azure default credential: %w", err))
				break
			}
			auth = azurekv.WithCredential(cred)
		case AzureAuthClientSecret:
			auth = azurekv.WithClientSecret(os.Getenv("AZURE_TENANT_ID"), os.Getenv("AZURE_CLIENT_ID"), os.Getenv("AZURE_CLIENT_SECRET"))
		case AzureAuthManagedIdentity:
			auth = azurekv.WithManagedIdentity(os.Getenv("AZURE_CLIENT_ID"))
		case AzureAuthWorkloadIdentity:
			auth = azurekv.WithWorkloadIdentity(os.Getenv("AZURE_TENANT_ID"), os.Getenv("AZURE_CLIENT_ID"), os.Getenv("AZURE_FEDERATED_TOKEN_FILE"))
		default:
			errs = append(errs, fmt.Errorf("KEYWARD_AZURE_AUTH=%q: want default, client_secret, managed_identity, workload_identity or none", c.AzureAuth))
		}
		if auth != nil {
			p, err := azurekv.New(auth)
			if err != nil {
				errs = append(errs, fmt.Errorf("Azure Key Vault provider: %w", err))
			} else {
				opts = append(opts, kms.WithProvider(kms.SchemeAzure, p))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.Breaker {
		bopts := []breaker.Option{breaker.WithSettings(c.BreakerSettings)}
		if mp != nil {
			bopts = append(bopts, breaker.WithMeterProvider(mp))
		}
		if c.OnBreakerChange != nil {
			bopts = append(bopts, breaker.WithOnStateChange(c.OnBreakerChange))
		}
		opts = append(opts, kms.WithGuard(breaker.New(bopts...)))
	}
	return kms.NewClient(append(opts, extra...)...), nil
}
