//! The shape of a registry:2 configuration, as far as wharf needs to know it.
//!
//! registry:2 walks its Go structs by reflection when it applies `REGISTRY_*` variables; wharf
//! walks a generic YAML tree instead, so this table says what each node is: a struct (fixed,
//! case-insensitive field names), a map (free keys), a list, or a typed leaf. The same table
//! drives validation. Sections wharf does not use are `Any`: accepted and walked as plain maps.

/// What a node of the configuration tree is.
#[derive(Debug)]
pub(crate) enum Kind {
    /// Fixed fields; a variable segment matches a field by its upper-cased name.
    Struct(&'static [Field]),
    /// A map keyed by driver name (`storage`, `auth`); a bare scalar names the driver.
    /// `sections` are keys that are not drivers (`storage.delete`, `storage.maintenance`...).
    Drivers {
        what: &'static str,
        sections: &'static [Field],
        drivers: &'static [Field],
    },
    /// A driver's parameters: a free map whose listed keys have a known type.
    Params(&'static [Field]),
    /// A free map whose values all have the same kind.
    Map(&'static Kind),
    /// A list, addressed by numeric index in variable names.
    List(&'static Kind),
    /// Anything: kept as is, walked as implicit maps and lists.
    Any,
    Str,
    Bool,
    /// A Go duration (`168h`, `5m30s`) or a number of nanoseconds.
    Duration,
    /// `error`, `warn`, `info` or `debug` (any case).
    LogLevel,
    /// `text`, `json` or `logstash`.
    Formatter,
    /// `host:port` or `:port`.
    Addr,
}

impl Kind {
    /// Leaves take their value whole; a null leaf means "not set".
    pub(crate) fn is_leaf(&self) -> bool {
        !matches!(
            self,
            Kind::Struct(_) | Kind::Drivers { .. } | Kind::Params(_) | Kind::Map(_) | Kind::Any
        )
    }
}

#[derive(Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

const fn f(name: &'static str, kind: Kind) -> Field {
    Field { name, kind }
}

/// Looks up a listed key exactly (YAML keys are case-sensitive).
pub(crate) fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a Field> {
    fields.iter().find(|f| f.name == name)
}

pub(crate) const ROOT: Kind = Kind::Struct(&[
    f("version", Kind::Str),
    f("log", Kind::Struct(LOG)),
    // Deprecated spelling of log.level, still honoured by registry:2.
    f("loglevel", Kind::LogLevel),
    f("storage", STORAGE),
    f("auth", AUTH),
    f("http", Kind::Struct(HTTP)),
    f("middleware", Kind::Any),
    f("reporting", Kind::Any),
    f("notifications", Kind::Struct(NOTIFICATIONS)),
    f("redis", Kind::Any),
    f("health", Kind::Any),
    f("catalog", Kind::Any),
    f("proxy", Kind::Any),
    f("compatibility", Kind::Any),
    f("validation", Kind::Any),
    f("policy", Kind::Any),
    // wharf's extension: access control (see auth::policy). No `_` in its keys, so every
    // key is reachable from a REGISTRY_ACCESS_* variable.
    f("access", Kind::Struct(ACCESS)),
    // wharf's extension: the web UI at /ui/ (REGISTRY_UI_ENABLED).
    f("ui", Kind::Struct(&[f("enabled", Kind::Bool)])),
]);

const ACCESS: &[Field] = &[
    f(
        "anonymous",
        Kind::Struct(&[f("allow", Kind::List(&Kind::Str)), f("repositories", Kind::List(&Kind::Str))]),
    ),
    f("groups", Kind::Map(&Kind::List(&Kind::Str))),
    f(
        "rules",
        Kind::List(&Kind::Struct(&[
            f("repositories", Kind::List(&Kind::Str)),
            f("users", Kind::List(&Kind::Str)),
            f("groups", Kind::List(&Kind::Str)),
            f("allow", Kind::List(&Kind::Str)),
        ])),
    ),
];

/// registry:2's `notifications`, plus wharf's `queue` and `signing` per endpoint.
const NOTIFICATIONS: &[Field] = &[
    f("events", Kind::Struct(&[f("includereferences", Kind::Bool)])),
    f(
        "endpoints",
        Kind::List(&Kind::Struct(&[
            f("name", Kind::Str),
            f("disabled", Kind::Bool),
            f("url", Kind::Str),
            f("headers", Kind::Map(&Kind::List(&Kind::Str))),
            f("timeout", Kind::Duration),
            // An integer: `Any` leaves the type check to the struct it is read into.
            f("threshold", Kind::Any),
            f("backoff", Kind::Duration),
            f("ignoredmediatypes", Kind::List(&Kind::Str)),
            f(
                "ignore",
                Kind::Struct(&[f("mediatypes", Kind::List(&Kind::Str)), f("actions", Kind::List(&Kind::Str))]),
            ),
            f("queue", Kind::Struct(&[f("path", Kind::Str), f("maxevents", Kind::Any)])),
            f(
                "signing",
                Kind::Struct(&[f("key", Kind::Str), f("keyfile", Kind::Str), f("header", Kind::Str)]),
            ),
        ])),
    ),
];

const LOG: &[Field] = &[
    f("accesslog", Kind::Any),
    f("level", Kind::LogLevel),
    f("formatter", Kind::Formatter),
    f("fields", Kind::Any),
    f("hooks", Kind::Any),
    f("reportcaller", Kind::Any),
];

const STORAGE: Kind = Kind::Drivers {
    what: "storage driver",
    sections: &[
        f("delete", Kind::Struct(&[f("enabled", Kind::Bool)])),
        f("maintenance", Kind::Struct(MAINTENANCE)),
        f("cache", Kind::Any),
        f("redirect", Kind::Struct(&[f("disable", Kind::Bool)])),
    ],
    // Unknown parameters of a driver are accepted, as registry:2's drivers ignore them.
    drivers: &[
        f("filesystem", Kind::Params(&[f("rootdirectory", Kind::Str)])),
        // A struct, not free parameters: a misspelt S3 key warns instead of silently falling
        // back to a default (say, an unencrypted bucket).
        f("s3", Kind::Struct(S3)),
        f("azure", Kind::Struct(AZURE)),
    ],
};

/// registry:2's Azure driver parameters (distribution 2.8 and main).
const AZURE: &[Field] = &[
    f("accountname", Kind::Str),
    f("accountkey", Kind::Str),
    f("container", Kind::Str),
    f("realm", Kind::Str),
    f("rootdirectory", Kind::Str),
    f("serviceurl", Kind::Str),
    f(
        "credentials",
        Kind::Struct(&[
            f("type", Kind::Str),
            f("clientid", Kind::Str),
            f("tenantid", Kind::Str),
            f("secret", Kind::Str),
        ]),
    ),
    f("skipverify", Kind::Bool),
    f("max_retries", Kind::Any),
    f("retry_delay", Kind::Duration),
];

/// registry:2's S3 driver parameters (distribution 2.8 and 3.0). Numbers are accepted as YAML
/// numbers or strings, as the Go driver parses both.
const S3: &[Field] = &[
    f("accesskey", Kind::Str),
    f("secretkey", Kind::Str),
    f("sessiontoken", Kind::Str),
    f("region", Kind::Str),
    f("regionendpoint", Kind::Str),
    f("forcepathstyle", Kind::Bool),
    f("bucket", Kind::Str),
    f("rootdirectory", Kind::Str),
    f("secure", Kind::Bool),
    f("skipverify", Kind::Bool),
    f("v4auth", Kind::Bool),
    f("chunksize", Kind::Any),
    f("encrypt", Kind::Bool),
    f("keyid", Kind::Str),
    f("storageclass", Kind::Str),
    f("multipartcopychunksize", Kind::Any),
    f("multipartcopymaxconcurrency", Kind::Any),
    f("multipartcopythresholdsize", Kind::Any),
    f("useragent", Kind::Str),
    f("usedualstack", Kind::Bool),
    f("accelerate", Kind::Bool),
    f("objectacl", Kind::Str),
    f("loglevel", Kind::Any),
];

const MAINTENANCE: &[Field] = &[
    f(
        "uploadpurging",
        Kind::Struct(&[
            f("enabled", Kind::Bool),
            f("age", Kind::Duration),
            f("interval", Kind::Duration),
            f("dryrun", Kind::Bool),
        ]),
    ),
    f("readonly", Kind::Struct(&[f("enabled", Kind::Bool)])),
    f(
        "retention",
        Kind::Struct(&[
            f("dryrun", Kind::Bool),
            f("delay", Kind::Duration),
            f(
                "policies",
                Kind::List(&Kind::Struct(&[
                    f("repositories", Kind::List(&Kind::Str)),
                    f("deleteuntagged", Kind::Bool),
                    f(
                        "keeptags",
                        Kind::List(&Kind::Struct(&[
                            f("patterns", Kind::List(&Kind::Str)),
                            f("mostrecentlypushedcount", Kind::Any),
                            f("mostrecentlypulledcount", Kind::Any),
                            f("pushedwithin", Kind::Duration),
                            f("pulledwithin", Kind::Duration),
                        ])),
                    ),
                ])),
            ),
            f(
                "protected",
                Kind::List(&Kind::Struct(&[
                    f("repositories", Kind::List(&Kind::Str)),
                    f("tags", Kind::List(&Kind::Str)),
                ])),
            ),
        ]),
    ),
    f(
        "gc",
        Kind::Struct(&[
            f("enabled", Kind::Bool),
            f("delay", Kind::Duration),
            f("interval", Kind::Duration),
            f("deleteuntagged", Kind::Bool),
            f("dryrun", Kind::Bool),
            f("window", Kind::Duration),
            f("poll", Kind::Duration),
            f("margin", Kind::Duration),
            f("maxrunage", Kind::Duration),
        ]),
    ),
];

const AUTH: Kind = Kind::Drivers {
    what: "auth scheme",
    sections: &[],
    drivers: &[
        f(
            "htpasswd",
            Kind::Params(&[
                f("realm", Kind::Str),
                f("path", Kind::Str),
                // wharf extensions: fail-open on a broken file, and the failed-login limits.
                f("keeponerror", Kind::Bool),
                f("failedlogins", Kind::Struct(FAILED_LOGINS)),
            ]),
        ),
        f(
            "token",
            Kind::Params(&[
                f("realm", Kind::Str),
                f("service", Kind::Str),
                f("issuer", Kind::Str),
                f("rootcertbundle", Kind::Str),
                // wharf extension: wharf issues the tokens itself, checking passwords here.
                f("htpasswd", Kind::Str),
                f("keeponerror", Kind::Bool),
                f("failedlogins", Kind::Struct(FAILED_LOGINS)),
                f("signingkey", Kind::Str),
            ]),
        ),
    ],
};

const FAILED_LOGINS: &[Field] = &[f("peraddress", Kind::Any), f("peruser", Kind::Any), f("window", Kind::Duration)];

const HTTP: &[Field] = &[
    f("addr", Kind::Addr),
    f("net", Kind::Any),
    f("host", Kind::Str),
    f("prefix", Kind::Str),
    f("secret", Kind::Str),
    f("relativeurls", Kind::Bool),
    // wharf's extension: proxies whose X-Forwarded-For is believed (see config::Http).
    f("trustedproxies", Kind::List(&Kind::Str)),
    f("draintimeout", Kind::Duration),
    // wharf's extension: slow-client limits (see config::Timeouts).
    f("timeouts", Kind::Struct(TIMEOUTS)),
    f("tls", Kind::Struct(TLS)),
    // Go's http.Header: header name to a list of values.
    f("headers", Kind::Map(&Kind::List(&Kind::Str))),
    f("debug", Kind::Any),
    f("http2", Kind::Any),
];

const TIMEOUTS: &[Field] = &[f("header", Kind::Duration), f("body", Kind::Duration)];

const TLS: &[Field] = &[
    f("certificate", Kind::Str),
    f("key", Kind::Str),
    f("clientcas", Kind::List(&Kind::Str)),
    f("minimumtls", Kind::Str),
    // wharf's extension: the CA published for `wharf trust` (see config::Tls::cafile).
    f("cafile", Kind::Str),
    f("ciphersuites", Kind::Any),
    f("letsencrypt", Kind::Any),
];
