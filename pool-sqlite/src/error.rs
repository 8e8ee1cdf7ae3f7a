//! Classification of SQLite errors, for retries and for the pool's connect retries.

use pool_core::ErrorClass;
use rusqlite::ffi;
use rusqlite::ErrorCode;

/// Classifies a SQLite error for [`pool_core::retry`].
///
/// | class | SQLite result codes |
/// |---|---|
/// | [`UniqueViolation`](ErrorClass::UniqueViolation) | `SQLITE_CONSTRAINT_UNIQUE`, `SQLITE_CONSTRAINT_PRIMARYKEY` |
/// | [`Deadlock`](ErrorClass::Deadlock) | `SQLITE_BUSY`, `SQLITE_LOCKED` (and their extended codes) |
/// | [`ConnectionLost`](ErrorClass::ConnectionLost) | `SQLITE_IOERR` (and its extended codes) |
/// | [`Other`](ErrorClass::Other) | everything else, including `SQLITE_CANTOPEN` (retrying does not make a file appear) |
///
/// `Deadlock` and `ConnectionLost` are the transient classes that `retry` reruns.
pub fn classify(err: &rusqlite::Error) -> ErrorClass {
    let Some(e) = err.sqlite_error() else {
        return ErrorClass::Other;
    };
    match e.code {
        ErrorCode::ConstraintViolation
            if matches!(
                e.extended_code,
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ) =>
        {
            ErrorClass::UniqueViolation
        }
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => ErrorClass::Deadlock,
        ErrorCode::SystemIoFailure => ErrorClass::ConnectionLost,
        _ => ErrorClass::Other,
    }
}

/// Whether a failed connect is worth retrying: busy/locked (another connection holds a lock
/// while this one switches the journal mode), I/O errors, out of memory and full disks may heal;
/// a file that cannot be opened, missing permissions, a file that is not a database, a corrupt
/// one, or a bad statement in the init hook do not.
pub(crate) fn is_retryable(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
                | ErrorCode::DiskFull
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn classes() {
        assert_eq!(
            classify(&failure(ffi::SQLITE_CONSTRAINT_UNIQUE)),
            ErrorClass::UniqueViolation
        );
        assert_eq!(
            classify(&failure(ffi::SQLITE_CONSTRAINT_PRIMARYKEY)),
            ErrorClass::UniqueViolation
        );
        assert_eq!(
            classify(&failure(ffi::SQLITE_CONSTRAINT_FOREIGNKEY)),
            ErrorClass::Other
        );
        assert_eq!(classify(&failure(ffi::SQLITE_BUSY)), ErrorClass::Deadlock);
        assert_eq!(
            classify(&failure(ffi::SQLITE_BUSY_SNAPSHOT)),
            ErrorClass::Deadlock
        );
        assert_eq!(classify(&failure(ffi::SQLITE_LOCKED)), ErrorClass::Deadlock);
        assert_eq!(
            classify(&failure(ffi::SQLITE_IOERR_WRITE)),
            ErrorClass::ConnectionLost
        );
        assert_eq!(classify(&failure(ffi::SQLITE_CANTOPEN)), ErrorClass::Other);
        assert_eq!(
            classify(&rusqlite::Error::QueryReturnedNoRows),
            ErrorClass::Other
        );
    }

    #[test]
    fn retryable() {
        assert!(is_retryable(&failure(ffi::SQLITE_BUSY)));
        assert!(is_retryable(&failure(ffi::SQLITE_IOERR)));
        assert!(!is_retryable(&failure(ffi::SQLITE_CANTOPEN)));
        assert!(!is_retryable(&failure(ffi::SQLITE_NOTADB)));
        assert!(!is_retryable(&failure(ffi::SQLITE_PERM)));
        assert!(!is_retryable(&rusqlite::Error::InvalidPath("x".into())));
    }
}
