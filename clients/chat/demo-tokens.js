// The chat's demo users. This copy has none: the page asks for a nickname. `make run`
// (tests/lib/demo-identity.py) overwrites it in the web root with users and the tokens
// it minted for them, and the page then signs in as one of them.
export default null;
