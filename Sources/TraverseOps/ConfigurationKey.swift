import TOMLKit

/// One key of the TOML file, as the loader, the defaults and the documentation see it. The
/// table of every key is `ConfigurationKeys.all`; nothing else names a key's default, its type
/// or its validation (Docs/configuration.md, *Where keys are defined*).
public struct ConfigurationKey: Sendable {
    /// Dotted name, e.g. `limits.max_lifetime`.
    public let name: String
    /// The type as Docs/configuration.md writes it (`integer 60–86400`).
    public let type: String
    /// The default as Docs/configuration.md writes it (`` `600` ``, `none`, …).
    public let defaultText: String
    /// What the key does, in one line (the documentation has the full text).
    public let doc: String
    let apply: @Sendable (TOMLValue, inout TraverseConfiguration) throws(ConfigurationError) -> Void

    /// Checks `value` and stores it in `configuration`; a bad value throws naming this key.
    func apply(_ value: TOMLValue, to configuration: inout TraverseConfiguration) throws(ConfigurationError) {
        try apply(value, &configuration)
    }
}

/// A key with its value's Swift type: the one place its default is written.
/// `TraverseConfiguration`'s properties are initialised from `defaultValue`.
public struct TypedKey<Value: Sendable>: Sendable {
    /// Dotted name.
    public let name: String
    /// The value when the key is absent from every layer.
    public let defaultValue: Value
    let kind: ValueKind<Value>
    let store: @Sendable (inout TraverseConfiguration, Value) -> Void
    let type: String
    let shownDefault: String?
    let doc: String

    /// A key `name` of `type` (as documented), stored by `store`. `shown` replaces the default's
    /// text when it cannot be written as a value ("see meaning", "the host name").
    init(
        _ name: String, _ type: String, _ kind: ValueKind<Value>, default defaultValue: Value, shown: String? = nil,
        doc: String, store: @escaping @Sendable (inout TraverseConfiguration, Value) -> Void
    ) {
        self.name = name
        self.type = type
        self.kind = kind
        self.defaultValue = defaultValue
        self.shownDefault = shown
        self.doc = doc
        self.store = store
    }

    /// Checks a TOML value of this key (errors name the key).
    func parse(_ value: TOMLValue) throws(ConfigurationError) -> Value { try kind.parse(name, value) }

    /// The untyped row of the table.
    var row: ConfigurationKey {
        let kind = self.kind
        let store = self.store
        let name = self.name
        return ConfigurationKey(
            name: name, type: type, defaultText: shownDefault ?? kind.show(defaultValue), doc: doc,
            apply: { (v: TOMLValue, c: inout TraverseConfiguration) throws(ConfigurationError) in
                store(&c, try kind.parse(name, v))
            })
    }
}
