//! The `plugin` world implemented badly on purpose, so that the host's sandbox can be shown to
//! stop it: `preview` loops forever, `create` allocates without bound, `get` panics (a trap),
//! `quota` reads an environment variable (a WASI import the host does not grant), and `list`
//! behaves, to show the host still serves calls after the others were stopped.

#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "../../../schemas/wit", world: "plugin" });
}

#[cfg(target_arch = "wasm32")]
mod component {
    use super::bindings::exports::promolens::codes::codes::Guest;
    use super::bindings::promolens::codes::host::CodeImage;
    use super::bindings::promolens::codes::types::{
        Authorization, BatchRow, Code, CodePreview, CodeRequest, Error, QuotaState,
    };

    struct Misbehave;

    fn unused<T>() -> Result<T, Error> {
        Err(Error::Host(
            "not implemented by the misbehaving component".into(),
        ))
    }

    impl Guest for Misbehave {
        fn authorization_status() -> Result<Option<Authorization>, Error> {
            Ok(None)
        }
        fn register_authorization(_app_id: String) -> Result<Authorization, Error> {
            unused()
        }
        fn revoke_authorization() -> Result<(), Error> {
            unused()
        }
        fn preview(_request: CodeRequest) -> Result<CodePreview, Error> {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        fn create(_request: CodeRequest) -> Result<Code, Error> {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        fn batch_create(_csv: String) -> Result<Vec<BatchRow>, Error> {
            unused()
        }
        fn list(_include_deleted: bool) -> Result<Vec<Code>, Error> {
            Ok(Vec::new())
        }
        fn get(id: String) -> Result<Code, Error> {
            panic!("misbehaving on purpose for {id}")
        }
        fn rename(_id: String, _name: String) -> Result<Code, Error> {
            unused()
        }
        fn delete(_id: String) -> Result<Code, Error> {
            unused()
        }
        fn image(_id: String) -> Result<CodeImage, Error> {
            unused()
        }
        fn quota() -> Result<QuotaState, Error> {
            let home = std::env::var("HOME").unwrap_or_default();
            Err(Error::Host(format!("read HOME={home}")))
        }
    }

    super::bindings::export!(Misbehave with_types_in super::bindings);
}
