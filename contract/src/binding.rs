//! The variables of a service binding: `<PREFIX><KEY>`, e.g. `DB_HOST`. kipper-controller
//! renders them (from the service and its `<service>-credentials` Secret) and kipper-poll reads
//! them when `KIPPER_SOURCE_URL` does not say everything (CONTRACT sections 2 and 4).

/// Default prefix of PostgreSQL, MySQL and MongoDB bindings.
pub const DB_PREFIX: &str = "DB_";
/// Default prefix of Redis bindings.
pub const REDIS_PREFIX: &str = "REDIS_";
/// Default prefix of MinIO (S3) bindings.
pub const S3_PREFIX: &str = "S3_";

/// Host name of the service.
pub const HOST: &str = "HOST";
/// Port of the service.
pub const PORT: &str = "PORT";
/// Login name (from the Secret).
pub const USERNAME: &str = "USERNAME";
/// The same login name under the seed page's spelling, `DB_USER`.
pub const USER: &str = "USER";
/// Password (from the Secret).
pub const PASSWORD: &str = "PASSWORD";
/// Database name.
pub const NAME: &str = "NAME";
/// S3 only: `http://host:port`.
pub const ENDPOINT: &str = "ENDPOINT";
/// S3 only: the access key under its upstream name; kipper-poll reads it before
/// [`USERNAME`], which is what the controller renders.
pub const ACCESS_KEY: &str = "ACCESS_KEY";
/// S3 only: the secret key under its upstream name; kipper-poll reads it before [`PASSWORD`].
pub const SECRET_KEY: &str = "SECRET_KEY";

/// The variable `key` of a binding with `prefix`, e.g. `var("DB_", HOST)` is `DB_HOST`.
pub fn var(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_is_prefix_then_key() {
        assert_eq!(var(DB_PREFIX, HOST), "DB_HOST");
        assert_eq!(var(S3_PREFIX, ENDPOINT), "S3_ENDPOINT");
        assert_eq!(var("EV_", USER), "EV_USER");
    }
}
